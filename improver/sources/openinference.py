"""OpenInference span exports (Phoenix / Arize): JSONL or parquet files of spans and annotations.

A row with ``annotation_name`` or ``annotator_kind`` is a span annotation (``span_id``,
``result.label``, ``result.explanation``, ``metadata``, ``identifier``); any other row
is a span (``name``, ``context.span_id``, ``attributes.session.id``,
``attributes.input.value`` …), flat or nested. Give one file, or a folder holding the
span and annotation files. Files are read a line (JSONL) or a record batch (parquet)
at a time; ``SpanMapping`` says which spans and annotations hold decisions and reviews.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from improver.errors import TraceError, require
from improver.models import Event, Quarantined
from improver.sources import jsonl_rows
from improver.sources.mapping import SpanAssembler, SpanFileSource

SUFFIXES = (".jsonl", ".json", ".parquet")


def is_annotation(row: dict) -> bool:
    return "annotation_name" in row or "annotator_kind" in row


def read_rows(path: Path, source: str) -> Iterator[tuple[int, dict | Quarantined]]:
    """(line or row number, row) for each row of a JSONL or parquet file; bad JSON lines as Quarantined."""
    if path.suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    for number, row, _line in jsonl_rows(path, source):
        yield number, row


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    parquet = require("pyarrow.parquet", "reading parquet span exports", "parquet")
    try:
        file = parquet.ParquetFile(path)
    except Exception as error:  # pyarrow raises its own error kinds for unreadable files
        raise TraceError(f"cannot read {path} as parquet: {error}") from error
    number = 0
    for batch in file.iter_batches(batch_size=2048):
        for row in batch.to_pylist():
            number += 1
            yield number, {k: _jsonable(v) for k, v in row.items() if v is not None}


def _jsonable(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, list) and value and isinstance(value[0], tuple):  # parquet map columns
        return dict(value)
    return value


class OpenInferenceSource(SpanFileSource):
    def files(self) -> list[Path]:
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.suffix in SUFFIXES)
            if not files:
                raise TraceError(f"{self.path} holds no {', '.join(SUFFIXES)} files of spans or annotations")
            return files
        return [self.path]

    def events(self) -> Iterator[Event | Quarantined]:
        assembler = SpanAssembler(self.mapping, self.name, self.cleaned, self.numeric_fields)
        for path in self.files():
            name = str(path)
            assembler.source = name
            for number, row in read_rows(path, name):
                if isinstance(row, Quarantined):
                    yield row
                elif is_annotation(row):
                    yield from assembler.add_annotation(row, number)
                else:
                    yield from assembler.add_span(row, number)
        yield from assembler.finish()
