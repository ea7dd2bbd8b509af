"""LangSmith runs and feedback, as the ``langsmith`` SDK models them (``Run``, ``Feedback``).

An export is what ``client.list_runs`` and ``client.list_feedback`` return, written as JSON
(``run.model_dump_json()`` / ``feedback.model_dump_json()`` a line, or one array), in one file
or two. A run row (``id``, ``name``, ``run_type``, ``trace_id``, ``inputs``, ``outputs``,
``extra.metadata``) is a span: its session is the thread LangSmith groups it by (metadata
``session_id``, ``thread_id`` or ``conversation_id``; ``Run.session_id`` is the tracing
project, not a conversation), its ``inputs`` and ``outputs`` are read like a span's input and
output value. A feedback row (``run_id``, ``key``, ``score``, ``value``, ``comment``,
``correction``, ``feedback_source``) is an annotation of its run: a human correction, or
feedback under a ``review_annotations`` key from a person (not ``feedback_source.type: model``),
is a review; its decision is the correction's decision (or the correction itself, or the
feedback's value), its reviewer the source's user name or id, its comment the notes.
"""
from __future__ import annotations

from typing import Iterator

from improver.models import Event, Quarantined
from improver.sources.mapping import DECISION_NAMES, SpanAssembler, SpanFileSource, SpanMapping

LAYOUT = "langsmith"
EXPECTS = "LangSmith runs (id, run_type, trace_id, inputs, outputs) and feedback (run_id, key, score, value, correction)"
KEYS = ("id", "name", "run_type", "trace_id", "inputs", "outputs", "extra", "run_id", "key", "score", "value",
        "comment", "correction", "feedback_source")
THREAD_KEYS = ("session_id", "thread_id", "conversation_id")


def is_run(row: dict) -> bool:
    return "run_type" in row and "id" in row


def is_feedback(row: dict) -> bool:
    return "run_id" in row and "key" in row and ("feedback_source" in row or "correction" in row or "score" in row)


def sniff(rows: list[dict], mapping=None) -> float:
    return sum(is_run(r) or is_feedback(r) for r in rows) / len(rows) if rows else 0.0


def span_record(run: dict) -> dict:
    """A run in the OpenInference row shape."""
    metadata = ((run.get("extra") or {}).get("metadata") or {}) if isinstance(run.get("extra"), dict) else {}
    session = next((metadata[k] for k in THREAD_KEYS if metadata.get(k)), None)
    attributes = {"input.value": run.get("inputs"), "output.value": run.get("outputs"), "metadata": metadata}
    if session is not None:
        attributes["session.id"] = str(session)
    return {"name": run.get("name"), "context": {"span_id": run.get("id"), "trace_id": run.get("trace_id")},
            "parent_id": run.get("parent_run_id"), "start_time": run.get("start_time"), "end_time": run.get("end_time"),
            "attributes": attributes}


def correction_decision(correction) -> str | None:
    if isinstance(correction, str):
        return correction
    if isinstance(correction, dict):
        for name in DECISION_NAMES:
            for holder in (correction, correction.get("outputs") or {}, correction.get("output") or {}):
                if isinstance(holder, dict) and holder.get(name) is not None:
                    return str(holder[name])
    return None


def annotation_record(feedback: dict, mapping: SpanMapping) -> dict | str:
    """A feedback row in Phoenix's annotation shape, or the reason it is not a review."""
    source = feedback.get("feedback_source") or {}
    key = feedback.get("key")
    correction = correction_decision(feedback.get("correction"))
    if source.get("type") == "model" and correction is None:
        return "feedback from a model (feedback_source.type: model), not a human"
    if correction is None and key not in mapping.review_annotations + mapping.reviewer_annotations + mapping.note_annotations:
        return "feedback keys not named in review_annotations, reviewer_annotations or note_annotations"
    label = correction if correction is not None else feedback.get("value")
    if label is None and key in mapping.review_annotations:
        label = feedback.get("score")
    name = mapping.review_annotations[0] if correction is not None else key
    reviewer = (source.get("user_name") or source.get("user_id") or (source.get("metadata") or {}).get("reviewer"))
    result = {k: v for k, v in (("label", None if label is None else str(label)), ("score", feedback.get("score")))
              if v is not None}
    return {"span_id": feedback.get("run_id"), "annotation_name": name, "annotator_kind": "HUMAN", "result": result,
            "metadata": {"reviewer": str(reviewer)} if reviewer else {},
            "notes": [feedback["comment"]] if feedback.get("comment") else [],
            "updated_at": feedback.get("modified_at") or feedback.get("created_at")}


class LangSmithSource(SpanFileSource):
    def add_row(self, assembler: SpanAssembler, number: int, row: dict) -> Iterator[Event | Quarantined]:
        assembler.read()
        if is_run(row):
            root = not row.get("parent_run_id")
            yield from assembler.add_span(span_record(row), number, aliases=[row.get("trace_id")] if root else [])
        elif is_feedback(row):
            record = annotation_record(row, self.mapping)
            if isinstance(record, str):
                assembler.ignore(record)
            else:
                yield from assembler.add_annotation(record, number)
        else:
            yield assembler.quarantine(number, "neither a LangSmith run nor a feedback row", row)


SOURCE = LangSmithSource
