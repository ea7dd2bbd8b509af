"""The rows of a trace file, whatever holds them: JSONL, one JSON document, a JSON array, CSV or parquet.

``read_rows(path)`` yields (row number, row) with the row a dict, or a ``Quarantined`` for
a row that cannot be parsed. A ``.gz`` file is read through gzip. JSONL is read a line at
a time; a file whose first line is not a complete JSON value is read as JSON documents
(one pretty-printed document, several one after another, or an array of them: each
array item or document is a row). ``peek(path)`` gives the first rows, for sniffing.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import re
from itertools import islice
from pathlib import Path
from typing import IO, Iterator

from improver.errors import TraceError, require
from improver.models import Quarantined
from improver.sources import REENCODE, as_text, jsonl_rows

SURROGATE = re.compile("[\udc80-\udcff]")  # a byte that was not UTF-8, read with surrogateescape
MAX_DOCUMENT = 512 * 1024 * 1024  # a pretty-printed document is read whole; larger ones must be JSONL


def base_suffix(path: Path) -> str:
    """The suffix that says the container, under a ``.gz``: ``.jsonl``, ``.json``, ``.csv``, ``.parquet``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def open_text(path: Path, errors: str = "replace") -> IO[str]:
    """The file as text (UTF-8, a byte order mark skipped, bad bytes replaced), through gzip when it is gzipped."""
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        if gzipped:
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors=errors)
        return path.open("r", encoding="utf-8-sig", errors=errors)
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error}") from error


def read_rows(path: Path, source: str | None = None, limits=None) -> Iterator[tuple[int, dict | Quarantined]]:
    """(row number, row) for every row of the file; unparseable rows (also rows that are not UTF-8, or
    JSON lines past the ``IngestLimits``) as Quarantined."""
    source = source or str(path)
    kind = base_suffix(path)
    if kind == ".parquet":
        yield from _parquet_rows(path)
    elif kind == ".csv":
        yield from _csv_rows(path, source)
    elif _is_document(path):
        yield from _document_rows(path, source)
    else:
        for number, row, _line in jsonl_rows(path, source, limits):
            yield number, row


def peek(path: Path, n: int = 20) -> list[dict]:
    """The first n rows that parse, for sniffing a file's layout."""
    if path.is_dir():
        return []
    rows = []
    for _, row in islice(read_rows(path), n * 5):
        if isinstance(row, dict):
            rows.append(row)
            if len(rows) == n:
                break
    return rows


def _is_document(path: Path) -> bool:
    """True when the first non-empty line is not a whole JSON value (a pretty-printed document or array)."""
    with open_text(path) as handle:
        for line in handle:
            if line.strip():
                if line.lstrip().startswith("["):
                    return True
                try:
                    json.loads(line)
                    return False
                except ValueError:
                    return line.strip() in ("{", "[")
    return False


def _document_rows(path: Path, source: str) -> Iterator[tuple[int, dict | Quarantined]]:
    with open_text(path, errors="surrogateescape") as handle:
        text = handle.read(MAX_DOCUMENT + 1)
    undecodable = SURROGATE.search(text) is not None
    if len(text) > MAX_DOCUMENT:
        raise TraceError(f"{path} is one JSON document over {MAX_DOCUMENT >> 20} MB; write it as JSONL (one object a line)")
    decoder, position, number = json.JSONDecoder(), 0, 0
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text):
            return
        try:
            value, end = decoder.raw_decode(text, position)
        except (json.JSONDecodeError, RecursionError) as error:
            line = text.count("\n", 0, position) + 1
            reason = f"invalid JSON: {error.msg}" if isinstance(error, ValueError) else "nested too deep to parse"
            yield line, Quarantined(source=source, line=line, reason=reason, raw=_raw(text[position:position + 10000]))
            return
        for item in value if isinstance(value, list) else [value]:
            number += 1
            if undecodable and SURROGATE.search(json.dumps(item, ensure_ascii=False)):
                yield number, Quarantined(source=source, line=number, reason=f"not UTF-8; {REENCODE}",
                                          raw=_raw(json.dumps(item, ensure_ascii=False)[:10000]))
                continue
            yield number, item if isinstance(item, dict) else Quarantined(
                source=source, line=number, reason="not a JSON object", raw=json.dumps(item)[:10000])
        position = end


def _csv_rows(path: Path, source: str) -> Iterator[tuple[int, dict | Quarantined]]:
    with open_text(path, errors="surrogateescape") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            row = {k: v for k, v in row.items() if k and v not in (None, "")}
            text = json.dumps(row, ensure_ascii=False)
            if SURROGATE.search(text):
                yield number, Quarantined(source=source, line=number, reason=f"not UTF-8; {REENCODE}", raw=_raw(text))
                continue
            yield number, row


def _raw(text: str) -> str:
    """Text read with surrogateescape, for the quarantine: each byte that is not UTF-8 as ``\\xNN``."""
    return as_text(text.encode("utf-8", errors="surrogateescape"))


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
            row = {k: _jsonable(v) for k, v in row.items()}
            yield number, {k: v for k, v in row.items() if v is not None}


def _jsonable(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN, as pandas writes a missing value
        return None
    if isinstance(value, list) and value and isinstance(value[0], tuple):  # parquet map columns
        return dict(value)
    return value
