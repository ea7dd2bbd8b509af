"""What each mapped field resolves to in a sample of a trace file (``improver sources show FILE``).

The file is read by the adapter ``open_source`` picks, through the real assembler, until a
decision and a review are found (or ``max_rows`` rows are read); for the first of each, every
field of the mapping is shown with the path it was read from, the record that held it and
the value, so a user sees the mapping before ingesting and knows which line of improver.yaml
to change when a field is empty.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

from improver.errors import TraceError
from improver.models import DecisionEvent, Quarantined, ReviewEvent
from improver.sources import open_source
from improver.sources.mapping import MISSING, SpanAssembler, SpanFileSource, lookup

DECISION_FIELDS = ("session", "span_id", "case", "decision", "confidence", "reasoning", "cited", "config_version", "time")
REVIEW_FIELDS = {"decision": "review_decision", "reviewer": "reviewer", "reasoning": "review_reasoning",
                 "precedent": "precedent", "conditions": "conditions", "confidence": "review_confidence"}


class Sampler(SpanAssembler):
    """The assembler, keeping the first decision span and the parts of the first review it builds."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.decision_span: dict | None = None
        self.review_parts: tuple[str, dict] | None = None

    def decision(self, record, session, line):
        if self.decision_span is None:
            self.decision_span = record
        return super().decision(record, session, line)

    def review(self, session, parts):
        if self.review_parts is None:
            self.review_parts = (session, parts)
        yield from super().review(session, parts)


def preview(value: Any, width: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"


def resolve(records: list[tuple[str, dict]], paths: list[str]) -> dict:
    """The first (record, path) that holds a value, in the assembler's order: record by record, path by path."""
    for label, record in records:
        for path in paths:
            value = lookup(record, path)
            if value is not MISSING and value is not None:
                return {"from": label, "path": path, "value": preview(value)}
    return {"from": None, "path": None, "value": None, "tried": paths}


def explain(spec: str, project=None, max_rows: int = 100000) -> dict:
    source = open_source(spec, project)
    layout = type(source).__module__.rsplit(".", 1)[-1]
    if not isinstance(source, SpanFileSource):
        if layout != "native":
            raise TraceError(f"`improver sources show` reads files; {spec} is a {layout} source")
        first = {}
        for item in source.events():
            if not isinstance(item, Quarantined):
                first.setdefault(item.type, item.model_dump())
            if len(first) == 2:
                break
        return {"source": spec, "layout": layout, "decision": first.get("decision"), "review": first.get("review"),
                "fields": {}}
    sampler = Sampler(source.mapping, source.name, Counter(), source.numeric_fields)
    events: dict[str, dict] = {}
    quarantined: Counter = Counter()
    for item in source.feed(sampler):
        if isinstance(item, Quarantined):
            quarantined[item.reason.split(":")[0]] += 1
        elif isinstance(item, DecisionEvent):
            events.setdefault("decision", item.model_dump())
        if sampler.tally["read"] >= max_rows:
            break
    for item in sampler.finish():
        if isinstance(item, ReviewEvent):
            events.setdefault("review", item.model_dump())
        elif isinstance(item, Quarantined):
            quarantined[item.reason] += 1
    mapping, fields = source.mapping, {}
    if sampler.decision_span is not None:
        span = [(f"span {sampler.decision_span.get('name')}", sampler.decision_span)]
        fields["decision"] = {field: resolve(span, getattr(mapping, field)) for field in DECISION_FIELDS}
    review_parts = sampler.review_parts
    if review_parts is None and sampler.waiting:  # annotations alone: shown as they will join their span
        span_id = sampler.waiting[0][0]
        waiting = [(source, line, record, True) for s, source, line, record in sampler.waiting if s == span_id]
        review_parts = (f"(waits for span {span_id})", {"parts": waiting})
    if review_parts is not None:
        session, parts = review_parts
        records, _, _ = sampler.review_sources(parts)
        span = parts["span"][2] if "span" in parts else None

        def label(record: dict) -> str:
            if record is span:
                return f"span {record.get('name')}"
            if set(record) == {"metadata"}:
                return "parsed notes"
            return f"annotation {record.get('annotation_name') or record.get('name')}"
        labelled = [(label(r), r) for r in records]
        fields["review"] = {field: resolve(labelled, getattr(mapping, key)) for field, key in REVIEW_FIELDS.items()}
        fields["review"]["session"] = {"from": "its span", "path": None, "value": session}
    return {"source": spec, "layout": layout, "rows_read": sampler.tally["read"], "decision": events.get("decision"),
            "review": events.get("review"), "fields": fields, "ignored": dict(sampler.ignored),
            "waiting": len(sampler.waiting), "quarantined": dict(quarantined)}
