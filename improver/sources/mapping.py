"""From OpenInference spans and annotations to native events, by a mapping.

``SpanMapping`` is the ``sources:`` section of improver.yaml: which span names hold the
agent's decision and the human review, and at which attribute paths the session, the
case and the decision fields live. Each field takes a list of paths, first hit wins;
a path walks nested objects, dotted keys (``attributes.session.id`` as one flat key)
and stringified JSON alike. The defaults read the seed layout: ``process.run`` agent
spans and ``override.run`` review spans per ``session.id``, with "Reviewer Decision"
annotations whose metadata or notes hold reasoning, precedent and conditions.

``SpanAssembler`` is shared by every span source (Phoenix exports, OTLP JSON, a live
Phoenix): it cleans what can be cleaned (NaN, numbers where strings belong, JSON
wrapped in prose), counts it in ``cleaned``, and quarantines the rest with a reason.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from improver.errors import ProjectError
from improver.models import DecisionEvent, Event, Quarantined, ReviewEvent

MISSING = object()


class SpanMapping(BaseModel):
    """Where the case, the decision and the review live in a team's spans."""

    model_config = ConfigDict(extra="forbid")
    decision_spans: list[str] = Field(default_factory=lambda: ["process.run"])
    review_spans: list[str] = Field(default_factory=lambda: ["override.run"])
    review_annotations: list[str] = Field(default_factory=lambda: ["Reviewer Decision"])
    note_annotations: list[str] = Field(default_factory=lambda: ["note"])
    span_id: list[str] = Field(default_factory=lambda: ["context.span_id", "span_id", "spanId"])
    session: list[str] = Field(default_factory=lambda: ["attributes.session.id", "session_id"])
    time: list[str] = Field(default_factory=lambda: ["end_time", "start_time"])
    case: list[str] = Field(default_factory=lambda: ["attributes.input.value.case", "attributes.input.value"])
    decision: list[str] = Field(default_factory=lambda: [
        "attributes.output.value.decision", "attributes.output.value.recommendation"])
    confidence: list[str] = Field(default_factory=lambda: ["attributes.output.value.confidence"])
    reasoning: list[str] = Field(default_factory=lambda: ["attributes.output.value.reasoning"])
    cited: list[str] = Field(default_factory=lambda: ["attributes.output.value.cited"])
    config_version: list[str] = Field(default_factory=lambda: ["attributes.metadata.config_version"])
    review_decision: list[str] = Field(default_factory=lambda: [
        "result.label", "attributes.output.value.decision", "attributes.output.value.recommendation"])
    reviewer: list[str] = Field(default_factory=lambda: [
        "metadata.reviewer", "attributes.user.id", "attributes.metadata.reviewer", "user_id"])
    review_reasoning: list[str] = Field(default_factory=lambda: [
        "metadata.notes.reasoning", "metadata.reasoning", "result.explanation.reasoning", "result.explanation",
        "attributes.output.value.reasoning"])
    precedent: list[str] = Field(default_factory=lambda: [
        "metadata.notes.precedent", "metadata.precedent", "result.explanation.precedent",
        "attributes.output.value.precedent"])
    conditions: list[str] = Field(default_factory=lambda: [
        "metadata.notes.conditions", "metadata.conditions", "result.explanation.conditions",
        "attributes.output.value.conditions"])

    @classmethod
    def from_project(cls, project) -> "SpanMapping":
        data = (project.config.sources or {}).get("spans", {}) if project is not None else {}
        try:
            return cls.model_validate({k: [v] if isinstance(v, str) else v for k, v in (data or {}).items()})
        except ValidationError as error:
            problems = "; ".join(f"sources.spans.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ProjectError(f"{project.root / 'improver.yaml'}: {problems}") from None


def json_text(text: str, fixes: set | None = None) -> Any:
    """The JSON value inside a string (also when wrapped in prose or a code fence), else MISSING."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        start, end = stripped.find("{"), stripped.rfind("}")
        if start < 0 or end < start:
            return MISSING
        stripped, wrapped = stripped[start:end + 1], True
    else:
        wrapped = False
    try:
        value = json.loads(stripped)
    except ValueError:
        return MISSING
    if wrapped and fixes is not None:
        fixes.add("JSON inside text")
    return value


def lookup(record: Any, path: str, fixes: set | None = None) -> Any:
    """The value at a dotted path, through nested objects, dotted keys and stringified JSON."""
    return _walk(record, path.split("."), fixes)


def _walk(value: Any, parts: list[str], fixes: set | None) -> Any:
    if not parts:
        return value
    if isinstance(value, str):
        value = json_text(value, fixes)
    if isinstance(value, list) and parts[0].isdigit():
        index = int(parts[0])
        return _walk(value[index], parts[1:], fixes) if index < len(value) else MISSING
    if not isinstance(value, dict):
        return MISSING
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in value:
            found = _walk(value[key], parts[n:], fixes)
            if found is not MISSING and found is not None:
                return found
    return MISSING


def without_nan(value: Any, fixes: set) -> Any:
    """NaN and infinities (not JSON) replaced by None, noted in ``fixes``."""
    if isinstance(value, float) and not math.isfinite(value):
        fixes.add("NaN or infinity")
        return None
    if isinstance(value, dict):
        return {k: without_nan(v, fixes) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nan(v, fixes) for v in value]
    return value


class SpanAssembler:
    """Joins spans and annotations into decision and review events, streaming.

    Decisions are yielded as their span arrives. Reviews wait until the end (``finish``)
    because their annotations and notes may come before or after the span they
    annotate; memory grows with the number of reviews, not with the input's size.
    """

    def __init__(self, mapping: SpanMapping, source: str, cleaned: Counter, numeric_fields=()):
        self.mapping = mapping
        self.source = source
        self.cleaned = cleaned
        self.numeric_fields = set(numeric_fields)
        self.sessions: dict[str, str] = {}  # span id -> session id, for decision and review spans
        self.reviews: dict[str, dict] = {}  # span id -> review fields gathered so far
        self.pending: dict[str, list[tuple[int, dict]]] = {}  # annotations whose span is not seen yet
        self.fixes: set[str] = set()  # repairs made to the record at hand, counted once per record

    def count_fixes(self) -> None:
        """Count the repairs the previous record needed (called as the next one starts)."""
        self.cleaned.update(self.fixes)
        self.fixes = set()

    def first(self, record: dict, paths: list[str]) -> Any:
        for path in paths:
            value = lookup(record, path, self.fixes)
            if value is not MISSING and value is not None:
                return value
        return None

    def text(self, record: dict, paths: list[str]) -> str | None:
        value = self.first(record, paths)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (int, float, bool)):
            self.fixes.add("number where text belongs")
            return str(value)
        return json.dumps(value, sort_keys=True)

    def strings(self, record: dict, paths: list[str]) -> list[str]:
        value = self.first(record, paths)
        if value is None:
            return []
        if isinstance(value, str):
            self.fixes.add("text where a list belongs")
            return [part.strip() for part in re.split(r"[;\n]", value) if part.strip()]
        if isinstance(value, list):
            return [item if isinstance(item, str) else json.dumps(item) for item in value if item is not None]
        self.fixes.add("value where a list belongs")
        return [str(value)]

    # --- spans ---------------------------------------------------------------------
    def add_span(self, record: dict, line: int) -> Iterator[Event | Quarantined]:
        self.count_fixes()
        name = record.get("name")
        is_decision, is_review = name in self.mapping.decision_spans, name in self.mapping.review_spans
        if not (is_decision or is_review):
            return
        record = without_nan(record, self.fixes)
        span_id, session = self.text(record, self.mapping.span_id), self.text(record, self.mapping.session)
        if not span_id or not session:
            yield self.quarantine(line, f"{name} span without {'span id' if not span_id else 'session id'}", record)
            return
        self.sessions[span_id] = session
        if is_decision:
            yield self.decision(record, session, line)
        else:
            self.reviews.setdefault(span_id, {"line": line})["span"] = record
        for annotation_line, annotation in self.pending.pop(span_id, []):
            yield from self.add_annotation(annotation, annotation_line)

    def decision(self, record: dict, session: str, line: int) -> Event | Quarantined:
        m = self.mapping
        case = self.first(record, m.case)
        if isinstance(case, str):
            case = json_text(case, self.fixes)
        if not isinstance(case, dict):
            return self.quarantine(line, "case is not a JSON object", record)
        case = without_nan(case, self.fixes)  # NaN inside stringified JSON
        decision = self.text(record, m.decision)
        if not decision:
            return self.quarantine(line, "no decision in the agent's output (not JSON or no decision field)", record)
        try:
            return DecisionEvent(session_id=session, case=self.numbers(case), decision=decision.strip(),
                                 confidence=self.text(record, m.confidence), reasoning=self.text(record, m.reasoning) or "",
                                 cited=self.strings(record, m.cited), config_version=self.text(record, m.config_version),
                                 ts=self.text(record, m.time))
        except ValidationError as error:
            return self.quarantine(line, f"invalid decision: {error.errors()[0]['msg']}", record)

    def numbers(self, case: dict) -> dict:
        """Numeric fields (the project's bands) that arrived as strings, as numbers."""
        fixed = dict(case)
        for key in self.numeric_fields & fixed.keys():
            value = fixed[key]
            if isinstance(value, str):
                try:
                    fixed[key] = float(value.replace(",", "").strip())
                    self.fixes.add("number as text")
                except ValueError:
                    pass
        return fixed

    # --- annotations ---------------------------------------------------------------
    def add_annotation(self, record: dict, line: int) -> Iterator[Event | Quarantined]:
        self.count_fixes()
        name = record.get("annotation_name", record.get("name"))
        if name not in self.mapping.review_annotations and name not in self.mapping.note_annotations:
            return
        record = without_nan(record, self.fixes)
        span_id = self.text(record, self.mapping.span_id)
        if not span_id:
            yield self.quarantine(line, "annotation without span id", record)
            return
        if span_id not in self.sessions:
            self.pending.setdefault(span_id, []).append((line, record))
            return
        review = self.reviews.setdefault(span_id, {"line": line})
        if name in self.mapping.review_annotations:
            review["annotation"] = record
        else:
            review.setdefault("notes", []).append(record)

    # --- the end -------------------------------------------------------------------
    def finish(self) -> Iterator[Event | Quarantined]:
        for span_id, parts in self.reviews.items():
            yield self.review(self.sessions[span_id], parts)
        for span_id, annotations in self.pending.items():
            for line, record in annotations:
                yield self.quarantine(line, "annotation for a span that is not in the input", record)
        self.reviews, self.pending = {}, {}
        self.count_fixes()

    def review(self, session: str, parts: dict) -> Event | Quarantined:
        self.count_fixes()
        m = self.mapping
        merged: dict = {}
        for note in parts.get("notes", []):  # a note holds reasoning / precedent / conditions
            text = self.first(note, ["result.explanation", "explanation", "note"])
            parsed = json_text(text, self.fixes) if isinstance(text, str) else MISSING
            notes = parsed if isinstance(parsed, dict) else _labelled_lines(text) if isinstance(text, str) else {}
            merged.update(notes)
        sources = [parts[k] for k in ("annotation", "span") if k in parts]
        if merged:
            sources = [{"metadata": {"notes": merged}}] + sources
        record = {"review": sources}
        paths = lambda field: [f"review.{i}.{p}" for i in range(len(sources)) for p in getattr(m, field)]  # noqa: E731
        decision = self.text(record, paths("review_decision"))
        if not decision:
            return self.quarantine(parts["line"], "review without a decision", sources[-1])
        return ReviewEvent(session_id=session, reviewer=self.text(record, paths("reviewer")) or "unknown",
                           decision=decision.strip(), reasoning=self.text(record, paths("review_reasoning")) or "",
                           precedent=self.text(record, paths("precedent")), conditions=self.strings(record, paths("conditions")),
                           ts=self.text(record, [f"review.{i}.{p}" for i in range(len(sources))
                                                 for p in ("updated_at", "created_at", *m.time)]))

    def quarantine(self, line: int, reason: str, record: Any) -> Quarantined:
        return Quarantined(source=self.source, line=line, reason=reason, raw=json.dumps(record, default=str)[:10000])


def _labelled_lines(text: str) -> dict:
    """``Reasoning: ...`` / ``Precedent: ...`` / ``Conditions: a; b`` (or a JSON list) lines of a free-text note."""
    found = {}
    for match in re.finditer(r"^\s*(reasoning|precedent|conditions)\s*:\s*(.+)$", text, re.IGNORECASE | re.MULTILINE):
        key, value = match.group(1).lower(), match.group(2).strip()
        if key == "conditions":
            listed = json_text(value)
            value = listed if isinstance(listed, list) else [part.strip() for part in value.split(";") if part.strip()]
        found[key] = value
    return found or {"reasoning": text.strip()}


class SpanFileSource:
    """What the span file sources share: a path, a mapping and counts of what was cleaned."""

    def __init__(self, path: Path, mapping: SpanMapping | None = None, numeric_fields=()):
        self.path = Path(path)
        self.name = str(self.path)
        self.mapping = mapping or SpanMapping()
        self.numeric_fields = numeric_fields
        self.cleaned: Counter = Counter()
