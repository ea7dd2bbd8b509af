"""Langfuse observations (and legacy traces) and scores, as the ``langfuse`` SDK models them.

An export is the public API's JSON (``ObservationV2`` and ``Score`` with their camelCase
aliases: ``model_dump(by_alias=True)``), a row a line or one array, in one file or several.
An observation row (``id``, ``traceId``, ``type``, ``name``, ``sessionId``, ``input``,
``output``, ``metadata``, ``startTime``) is a span of session ``sessionId``; a root
observation also answers for its trace id, and a legacy trace row (``id``, ``sessionId``,
``input``, ``output``, ``timestamp``, no ``traceId``) is read the same way. A score row
(``name``, ``value`` / ``stringValue``, ``comment``, ``source``, ``dataType``,
``authorUserId``) annotates its observation, else its trace, else its session
(``sessionId``): a score from an annotation queue or a person (``source`` ANNOTATION or API,
or ``dataType`` CORRECTION) under a ``review_annotations`` name is a review, its
``stringValue`` (or value) the decision, ``authorUserId`` the reviewer, ``comment`` the notes.
``source`` EVAL scores are an evaluator's, not a human's, and are ignored with that reason.
"""
from __future__ import annotations

from typing import Iterator

from improver.models import Event, Quarantined
from improver.sources.mapping import SpanAssembler, SpanFileSource, SpanMapping

LAYOUT = "langfuse"
EXPECTS = "Langfuse observations (id, traceId, type, sessionId, input, output) and scores (name, value, source, traceId)"
KEYS = ("id", "traceId", "type", "name", "sessionId", "input", "output", "metadata", "startTime", "value",
        "stringValue", "comment", "source", "dataType", "observationId", "authorUserId")
HUMAN_SOURCES = ("ANNOTATION", "API")


def is_score(row: dict) -> bool:
    return "name" in row and ("dataType" in row or "stringValue" in row or ("value" in row and "source" in row))


def is_observation(row: dict) -> bool:
    return "id" in row and not is_score(row) and (("traceId" in row and "startTime" in row)
                                                   or ("sessionId" in row and "timestamp" in row))


def sniff(rows: list[dict], mapping=None) -> float:
    return sum(is_score(r) or is_observation(r) for r in rows) / len(rows) if rows else 0.0


def span_record(row: dict) -> dict:
    attributes = {"input.value": row.get("input"), "output.value": row.get("output"), "metadata": row.get("metadata") or {}}
    if row.get("sessionId"):
        attributes["session.id"] = row["sessionId"]
    if row.get("userId"):
        attributes["user.id"] = row["userId"]
    return {"name": row.get("name"), "context": {"span_id": row.get("id"), "trace_id": row.get("traceId") or row.get("id")},
            "parent_id": row.get("parentObservationId"), "start_time": row.get("startTime") or row.get("timestamp"),
            "end_time": row.get("endTime"), "attributes": attributes}


def annotation_record(score: dict, mapping: SpanMapping) -> dict | str:
    """A score row in Phoenix's annotation shape, or the reason it is not a review."""
    name = score.get("name")
    if score.get("source") not in HUMAN_SOURCES and score.get("dataType") != "CORRECTION":
        return f"scores from source {score.get('source')} (an evaluator), not a human"
    if name not in mapping.review_annotations + mapping.reviewer_annotations + mapping.note_annotations:
        return "scores not named in review_annotations, reviewer_annotations or note_annotations"
    label = score.get("stringValue") if score.get("stringValue") not in (None, "") else score.get("value")
    record = {"span_id": score.get("observationId") or score.get("traceId"), "annotation_name": name,
              "annotator_kind": "HUMAN", "result": {"label": None if label is None else str(label)},
              "metadata": {"reviewer": score["authorUserId"]} if score.get("authorUserId") else {},
              "notes": [score["comment"]] if score.get("comment") else [],
              "updated_at": score.get("updatedAt") or score.get("timestamp")}
    if score.get("sessionId"):
        record["session_id"] = score["sessionId"]
    return record


class LangfuseSource(SpanFileSource):
    def add_row(self, assembler: SpanAssembler, number: int, row: dict) -> Iterator[Event | Quarantined]:
        assembler.read()
        if is_score(row):
            record = annotation_record(row, self.mapping)
            if isinstance(record, str):
                assembler.ignore(record)
            else:
                yield from assembler.add_annotation(record, number)
        elif is_observation(row):
            root = row.get("isRootObservation") or not row.get("parentObservationId")
            yield from assembler.add_span(span_record(row), number,
                                          aliases=[row.get("traceId")] if root and row.get("traceId") else [])
        else:
            yield assembler.quarantine(number, "neither a Langfuse observation nor a score", row)


SOURCE = LangfuseSource
