"""OpenInference span exports (Phoenix, or Arize without annotation columns): spans and annotations.

A row with ``annotation_name`` or ``annotator_kind`` is a span annotation (``span_id``,
``result.label``, ``result.explanation``, ``metadata``, ``identifier``); any other row
is a span (``name``, ``context.span_id``, ``attributes.session.id``,
``attributes.input.value`` …), flat (``attributes.*`` columns) or nested. Files are JSONL,
JSON, CSV or parquet, gzipped or not, read a row at a time (``rows.read_rows``);
``SpanMapping`` says which spans and annotations hold decisions and reviews.
"""
from __future__ import annotations

from typing import Iterator

from improver.models import Event, Quarantined
from improver.sources.mapping import MISSING, SpanAssembler, SpanFileSource, SpanMapping, lookup

LAYOUT = "openinference"
EXPECTS = "spans with name, context.span_id and attributes.session.id; annotations with annotation_name and span_id"
KEYS = ("name", "context.span_id", "span_id", "attributes.session.id", "attributes.input.value",
        "attributes.output.value", "annotation_name", "annotator_kind", "result.label")


def is_annotation(row: dict) -> bool:
    return "annotation_name" in row or "annotator_kind" in row


def is_span(row: dict, mapping: SpanMapping) -> bool:
    return (any(lookup(row, path) is not MISSING for path in mapping.span_name)
            and any(lookup(row, path) is not MISSING for path in mapping.span_id))


def sniff(rows: list[dict], mapping: SpanMapping) -> float:
    """The share of these rows that are OpenInference spans or annotations."""
    return sum(is_annotation(r) or is_span(r, mapping) for r in rows) / len(rows) if rows else 0.0


class OpenInferenceSource(SpanFileSource):
    def add_row(self, assembler: SpanAssembler, number: int, row: dict) -> Iterator[Event | Quarantined]:
        assembler.read()
        if is_annotation(row):
            yield from assembler.add_annotation(row, number)
        else:
            yield from assembler.add_span(row, number)


SOURCE = OpenInferenceSource
