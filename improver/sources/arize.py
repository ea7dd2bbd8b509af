"""Arize span annotations and span exports: ``annotation.<name>.<label|score|text|updated_by|updated_at>`` columns.

The layout of the Arize SDK's annotations DataFrame (``client.spans.update_annotations``):
rows keyed by ``context.span_id`` with one column group per annotation name and a free-text
``annotation.notes`` column; on the wire the SDK sends the notes as a list of JSON objects
(``{"text", "updated_by", "updated_at"}``), and both forms are read. Files are JSONL, JSON,
CSV or parquet. An Arize span export row (``name``, ``context.span_id``, flattened
``attributes.*`` columns) may carry the same annotation columns; it is read as a span and
as an annotation of that span.

Each annotation row becomes one annotation in Phoenix's shape for ``SpanAssembler``: the
mapping's ``review_annotations`` ("Reviewer Decision") give the decision (label, else
text); ``reviewer_annotations`` ("Reviewer Name") or the decision's ``updated_by`` the
reviewer; "Reviewer Confidence" the reviewer's confidence; the notes, parsed by ``note_labels`` (``Reasoning:`` / ``Precedent:`` /
``Conditions:`` lines, or a JSON object), the reasoning, precedent and conditions.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Iterator

from improver.models import Event, Quarantined
from improver.sources.mapping import SpanAssembler, SpanFileSource, SpanMapping, json_text, MISSING
from improver.sources.openinference import is_span

LAYOUT = "arize"
EXPECTS = "context.span_id with annotation.<name>.label|score|text|updated_by columns and annotation.notes"
KEYS = ("context.span_id", "annotation.notes", "annotation.Reviewer Decision.label",
        "annotation.Reviewer Decision.updated_by", "annotation.Reviewer Name.label")
COLUMN = re.compile(r"^annotation\.(.+)\.(label|score|text|updated_by|updated_at)$")
NOTES = "annotation.notes"
SDK_DEFAULT_AUTHOR = "SDK"  # what the SDK writes as updated_by when the caller gives none


def has_annotations(row: dict) -> bool:
    return any(value not in (None, "", []) and (key == NOTES or COLUMN.match(key)) for key, value in row.items())


def sniff(rows: list[dict], mapping=None) -> float:
    """The share of rows that are annotations or spans, once any row has annotation columns (an Arize
    span export holds both, and this adapter reads both)."""
    mapping = mapping or SpanMapping()
    if not any(has_annotations(r) for r in rows):
        return 0.0
    return sum(has_annotations(r) or is_span(r, mapping) for r in rows) / len(rows)


def annotation_columns(row: dict) -> dict[str, dict[str, object]]:
    """{annotation name: {suffix: value}} for the row's annotation columns that hold a value."""
    found: dict[str, dict[str, object]] = {}
    for key, value in row.items():
        match = COLUMN.match(key)
        if match and value is not None and value != "":
            found.setdefault(match.group(1), {})[match.group(2)] = value
    return found


def note_items(value) -> list[dict]:
    """The notes of a row, each ``{"text", "updated_by"?, "updated_at"?}``, from either form."""
    if value is None:
        return []
    if isinstance(value, str):
        parsed = json_text(value) if value.strip()[:1] in "[{" else MISSING
        if parsed is MISSING:
            return [{"text": value}] if value.strip() else []
        value = parsed
    items = value if isinstance(value, list) else [value]
    notes = []
    for item in items:
        if isinstance(item, str):
            parsed = json_text(item) if item.strip()[:1] == "{" else MISSING
            item = parsed if isinstance(parsed, dict) else {"text": item}
        if isinstance(item, dict) and isinstance(item.get("text"), str) and item["text"].strip():
            notes.append(item)
    return notes


def iso(value) -> str | None:
    """An Arize timestamp (epoch milliseconds, or text) as ISO text."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, (int, float)) and value > 1e11:
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc).isoformat()
    return None if value is None else str(value)


def annotation_record(row: dict, mapping: SpanMapping) -> dict:
    """One Arize annotation row in Phoenix's annotation shape (see the module docstring)."""
    found = annotation_columns(row)
    notes = note_items(row.get(NOTES))
    review_name = next((n for n in mapping.review_annotations if n in found), None)
    review = found.get(review_name, {})
    reviewer = next((str(found[n].get("label") or found[n].get("text")) for n in mapping.reviewer_annotations
                     if n in found and (found[n].get("label") or found[n].get("text"))), None)
    authors = [review.get("updated_by")] + [note.get("updated_by") for note in notes]
    reviewer = reviewer or next((str(a) for a in authors if a and a != SDK_DEFAULT_AUTHOR), None)
    confidence = next((found[n].get("label", found[n].get("score")) for n in mapping.confidence_annotations if n in found),
                      None)
    if review_name:
        name = review_name
    elif reviewer and any(n in found for n in mapping.reviewer_annotations):
        name = next(n for n in mapping.reviewer_annotations if n in found)
    elif notes:
        name = mapping.note_annotations[0] if mapping.note_annotations else NOTES
    else:
        name = next(iter(found), NOTES)  # an annotation the mapping does not name: ignored, with a reason
    span_id = next((row[k] for k in mapping.span_id if row.get(k)), None)
    record = {"span_id": span_id, "annotation_name": name, "annotator_kind": "HUMAN",
              "result": {k: v for k, v in {"label": review.get("label") or review.get("text"), "score": review.get("score"),
                                           "explanation": review.get("text") if review.get("label") else None}.items()
                         if v is not None},
              "metadata": {k: str(v) for k, v in {"reviewer": reviewer, "confidence": confidence}.items() if v is not None},
              "notes": [note["text"] for note in notes],
              "updated_at": iso(review.get("updated_at") or next((n.get("updated_at") for n in notes), None))}
    if row.get("attributes.session.id") or row.get("session_id"):
        record["session_id"] = row.get("attributes.session.id") or row.get("session_id")
    return record


class ArizeSource(SpanFileSource):
    def add_row(self, assembler: SpanAssembler, number: int, row: dict) -> Iterator[Event | Quarantined]:
        """A span, an annotation, or (an Arize span export row) both, each counted as a row read."""
        span, annotated = is_span(row, self.mapping), has_annotations(row)
        if span:
            assembler.read()
            yield from assembler.add_span({k: v for k, v in row.items() if not k.startswith("annotation.")}, number)
        if annotated or not span:
            assembler.read()
            if annotated:
                yield from assembler.add_annotation(annotation_record(row, self.mapping), number)
            else:
                yield assembler.quarantine(number, "neither a span nor an Arize annotation row", row)


SOURCE = ArizeSource
