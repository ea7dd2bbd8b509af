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
from improver.sources import DEFAULT_LIMITS, loads
from improver.sources.rows import read_rows

MISSING = object()


OUTPUT = ("attributes.output.value", "attributes.output.value.output")  # the agent's answer, and LangChain's wrapper
DECISION_NAMES = ("decision", "recommendation", "verdict", "outcome")
REASONING_NAMES = ("reasoning", "recommendation_reasoning", "decision_reasoning", "rationale", "explanation", "reason",
                   "justification")
CONFIDENCE_NAMES = ("confidence", "confidence_level", "certainty")
CITED_NAMES = ("cited", "citations", "policies_cited")


def under(prefixes, names) -> list[str]:
    """Every name under every prefix, name by name: the default paths for one field."""
    return [f"{prefix}.{name}" for name in names for prefix in prefixes]


class SpanMapping(BaseModel):
    """Where the case, the decision and the review live in a team's spans."""

    model_config = ConfigDict(extra="forbid")
    decision_spans: list[str] = Field(default_factory=lambda: ["process.run"])
    review_spans: list[str] = Field(default_factory=lambda: ["override.run"])
    span_name: list[str] = Field(default_factory=lambda: ["name"])
    review_annotations: list[str] = Field(default_factory=lambda: ["Reviewer Decision"])
    reviewer_annotations: list[str] = Field(default_factory=lambda: ["Reviewer Name", "Reviewer"])
    confidence_annotations: list[str] = Field(default_factory=lambda: ["Reviewer Confidence", "Confidence"])
    note_annotations: list[str] = Field(default_factory=lambda: ["note"])
    note_labels: dict[str, list[str]] = Field(default_factory=lambda: {
        "reasoning": ["Reasoning", "Rationale", "Why"], "precedent": ["Precedent"], "conditions": ["Conditions"]})
    span_id: list[str] = Field(default_factory=lambda: ["context.span_id", "span_id", "spanId"])
    session: list[str] = Field(default_factory=lambda: [
        "attributes.session.id", "session_id", "attributes.metadata.session_id", "attributes.metadata.thread_id",
        "attributes.metadata.conversation_id"])
    time: list[str] = Field(default_factory=lambda: ["end_time", "start_time"])
    case: list[str] = Field(default_factory=lambda: ["attributes.input.value.case", "attributes.input.value"])
    decision: list[str] = Field(default_factory=lambda: under(OUTPUT, DECISION_NAMES))
    confidence: list[str] = Field(default_factory=lambda: under(OUTPUT, CONFIDENCE_NAMES))
    reasoning: list[str] = Field(default_factory=lambda: under(OUTPUT, REASONING_NAMES))
    cited: list[str] = Field(default_factory=lambda: under(OUTPUT, CITED_NAMES))
    config_version: list[str] = Field(default_factory=lambda: ["attributes.metadata.config_version"])
    review_decision: list[str] = Field(default_factory=lambda: ["result.label", *under(OUTPUT, DECISION_NAMES)])
    reviewer: list[str] = Field(default_factory=lambda: [
        "metadata.reviewer", "attributes.user.id", "attributes.metadata.reviewer", "user_id"])
    review_confidence: list[str] = Field(default_factory=lambda: [
        "metadata.confidence", "metadata.reviewer_confidence", "metadata.notes.confidence"])
    review_reasoning: list[str] = Field(default_factory=lambda: [
        "metadata.notes.reasoning", "metadata.reasoning", "result.explanation.reasoning", "result.explanation",
        *under(OUTPUT, REASONING_NAMES)])
    precedent: list[str] = Field(default_factory=lambda: [
        "metadata.notes.precedent", "metadata.precedent", "result.explanation.precedent", *under(OUTPUT, ["precedent"])])
    conditions: list[str] = Field(default_factory=lambda: [
        "metadata.notes.conditions", "metadata.conditions", "result.explanation.conditions", *under(OUTPUT, ["conditions"])])

    @classmethod
    def from_project(cls, project) -> "SpanMapping":
        data = (project.config.sources or {}).get("spans", {}) if project is not None else {}
        try:
            return cls.model_validate({k: [v] if isinstance(v, str) else v for k, v in (data or {}).items()})
        except ValidationError as error:
            problems = "; ".join(f"sources.spans.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ProjectError(f"{project.root / 'improver.yaml'}: {problems}") from None


def json_text(text: str, fixes: set | None = None) -> Any:
    """The JSON value inside a string (also when wrapped in prose or a code fence), else MISSING
    (also when nested deeper than the default ``ingest.max_depth``)."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        start, end = stripped.find("{"), stripped.rfind("}")
        if start < 0 or end < start:
            return MISSING
        stripped, wrapped = stripped[start:end + 1], True
    else:
        wrapped = False
    try:
        value = loads(stripped, DEFAULT_LIMITS)
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

    With a ``join`` index (the trace store), annotations also meet spans stored by an
    earlier ingest, and spans meet annotations that have been waiting for them; an
    annotation whose span is nowhere yet is kept in ``waiting`` for the store. ``tally``
    accounts for every row read: joined into an event, ignored (by reason), waiting or
    quarantined (by the Quarantined items yielded).
    """

    def __init__(self, mapping: SpanMapping, source: str, cleaned: Counter, numeric_fields=(), join=None):
        self.mapping = mapping
        self.source = source
        self.cleaned = cleaned
        self.numeric_fields = set(numeric_fields)
        self.join = join
        self.sessions: dict[str, str] = {}  # span id -> session id, for decision and review spans
        self.seen: dict[str, str] = {}  # the same, for the spans of this input only (for the store)
        self.reviews: dict[str, dict] = {}  # span id -> review parts gathered so far
        self.pending: dict[str, list[tuple[str, int, dict, bool]]] = {}  # annotations whose span is not seen yet
        self.waiting: list[tuple[str, str, int, dict]] = []  # (span id, source, line, annotation) for the store
        self.tally: Counter = Counter()
        self.ignored: Counter = Counter()
        self.fixes: set[str] = set()  # repairs made to the record at hand, counted once per record

    def count_fixes(self) -> None:
        """Count the repairs the previous record needed (called as the next one starts)."""
        self.cleaned.update(self.fixes)
        self.fixes = set()

    def read(self, n: int = 1) -> None:
        """Count rows read from the input (every row read must end joined, ignored, waiting or quarantined)."""
        self.tally["read"] += n

    def ignore(self, reason: str) -> None:
        self.ignored[reason] += 1

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
            listed = json_text(value) if value.strip().startswith("[") else MISSING
            if isinstance(listed, list):
                return [item if isinstance(item, str) else json.dumps(item) for item in listed if item is not None]
            self.fixes.add("text where a list belongs")
            return [part.strip() for part in re.split(r"[;\n]", value) if part.strip()]
        if isinstance(value, list):
            return [item if isinstance(item, str) else json.dumps(item) for item in value if item is not None]
        self.fixes.add("value where a list belongs")
        return [str(value)]

    # --- spans ---------------------------------------------------------------------
    def add_span(self, record: dict, line: int, aliases=()) -> Iterator[Event | Quarantined]:
        """A span; ``aliases`` are other ids that annotations may use for it (a trace's id for its root)."""
        self.count_fixes()
        name = record.get("name") if self.mapping.span_name == ["name"] else self.text(record, self.mapping.span_name)
        is_decision, is_review = name in self.mapping.decision_spans, name in self.mapping.review_spans
        if not (is_decision or is_review):
            self.ignore("spans that are neither decision_spans nor review_spans")
            return
        record = without_nan(record, self.fixes)
        span_id, session = self.text(record, self.mapping.span_id), self.text(record, self.mapping.session)
        if not span_id or not session:
            yield self.quarantine(line, f"{name} span without {'span id' if not span_id else 'session id'}", record)
            return
        for key in (span_id, *(a for a in aliases if a)):
            self.sessions[key] = self.seen[key] = session
            for source, annotation_line, annotation, counted in self.pending.pop(key, []):
                self.attach(key, source, annotation_line, annotation, counted)
        if is_decision:
            yield self.counted(self.decision(record, session, line))
        else:
            self.reviews.setdefault(span_id, {"parts": []})["span"] = (self.source, line, record, True)

    def counted(self, item: Event | Quarantined) -> Event | Quarantined:
        if not isinstance(item, Quarantined):
            self.tally["joined"] += 1
        return item

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
        """An annotation or note on a span (Phoenix's shape; other layouts are brought to it)."""
        self.count_fixes()
        name = record.get("annotation_name", record.get("name"))
        m = self.mapping
        if name not in m.review_annotations + m.note_annotations + m.reviewer_annotations + m.confidence_annotations:
            self.ignore("annotations not named in review_annotations, reviewer_annotations, confidence_annotations"
                        " or note_annotations")
            return
        record = without_nan(record, self.fixes)
        span_id = self.text(record, self.mapping.span_id)
        if not span_id and record.get("session_id"):  # an annotation of a whole session needs no span
            span_id = f"session:{record['session_id']}"
            self.sessions[span_id] = str(record["session_id"])
        if not span_id:
            yield self.quarantine(line, "annotation without span id", record)
            return
        if span_id in self.sessions:
            self.attach(span_id, self.source, line, record, True)
        else:
            self.pending.setdefault(span_id, []).append((self.source, line, record, True))

    def attach(self, span_id: str, source: str, line: int, record: dict, counted: bool) -> None:
        self.reviews.setdefault(span_id, {"parts": []})["parts"].append((source, line, record, counted))

    # --- the end -------------------------------------------------------------------
    def finish(self) -> Iterator[Event | Quarantined]:
        if self.join is not None:
            self.join_stored()
        for span_id, annotations in self.pending.items():
            for source, line, record, counted in annotations:
                if counted:
                    self.tally["waiting"] += 1
                    self.waiting.append((span_id, source, line, record))
        by_session: dict[str, list[dict]] = {}
        for span_id, parts in self.reviews.items():
            by_session.setdefault(self.sessions[span_id], []).append(parts)
        for session, reviews in by_session.items():
            annotated = [parts for parts in reviews if parts["parts"]]
            for parts in reviews:
                if annotated and not parts["parts"]:  # a review read from an annotation wins over one inferred from a span
                    self.tally["joined"] += 1
                    continue
                yield from self.review(session, parts)
        self.reviews, self.pending = {}, {}
        self.count_fixes()

    def join_stored(self) -> None:
        """Annotations stored earlier, waiting for this input's spans; spans stored earlier, for its annotations."""
        for span_id, source, line, record in self.join.waiting_for(self.seen):
            self.tally["joined_waiting"] += 1
            self.attach(span_id, source, line, record, False)
        for span_id, session in self.join.span_sessions(list(self.pending)).items():
            self.sessions[span_id] = session
            for source, line, record, counted in self.pending.pop(span_id):
                self.attach(span_id, source, line, record, counted)

    def review(self, session: str, parts: dict) -> Iterator[Event | Quarantined]:
        self.count_fixes()
        m = self.mapping
        rows = parts["parts"] + ([parts["span"]] if "span" in parts else [])
        sources, annotations, decisions = self.review_sources(parts)
        record = {"review": sources}
        paths = lambda field: [f"review.{i}.{p}" for i in range(len(sources)) for p in getattr(m, field)]  # noqa: E731
        decision = self.text(record, paths("review_decision"))
        if not decision:
            for source, line, row, counted in rows:
                if counted:
                    yield Quarantined(source=source, line=line, reason="review without a decision",
                                      raw=json.dumps(row, default=str)[:10000])
            return
        self.tally["joined"] += sum(1 for *_, counted in rows if counted)
        yield ReviewEvent(session_id=session, reviewer=self.text(record, paths("reviewer")) or "unknown",
                          decision=decision.strip(), reasoning=self.text(record, paths("review_reasoning")) or "",
                          precedent=self.text(record, paths("precedent")), conditions=self.strings(record, paths("conditions")),
                          ts=self.text(record, [f"review.{i}.{p}" for i in range(len(sources))
                                                for p in ("updated_at", "created_at", *m.time)]),
                          confidence=self.text(record, paths("review_confidence")),
                          inferred=not annotations)

    def review_sources(self, parts: dict) -> tuple[list[dict], list[dict], list[dict]]:
        """The records a review's fields are read from, in order (parsed notes, the decision annotation,
        other annotations, the review span), with its annotations and its decision annotations."""
        m = self.mapping
        annotations = [r for _, _, r, _ in parts["parts"]]
        merged: dict = {}
        for note in annotations:  # a note holds reasoning / precedent / conditions
            texts = note.get("notes") or ([] if note.get("annotation_name", note.get("name")) not in m.note_annotations
                                          else [self.first(note, ["result.explanation", "explanation", "note"])])
            for text in texts:
                parsed = json_text(text, self.fixes) if isinstance(text, str) else MISSING
                merged.update(parsed if isinstance(parsed, dict) else labelled_lines(text, m.note_labels)
                              if isinstance(text, str) else {})
        named = lambda a, names: a.get("annotation_name", a.get("name")) in names  # noqa: E731
        decisions = [a for a in annotations if named(a, m.review_annotations)]
        others = [a for a in annotations if not named(a, m.review_annotations)]
        found = {"notes": merged} if merged else {}
        for key, names in (("reviewer", m.reviewer_annotations), ("confidence", m.confidence_annotations)):
            value = next((self.text(a, ["result.label", "result.score"]) for a in others if named(a, names)), None)
            if value:
                found[key] = value
        sources = ([{"metadata": found}] if found else []) + decisions + others
        sources += [parts["span"][2]] if "span" in parts else []
        return sources, annotations, decisions

    def quarantine(self, line: int, reason: str, record: Any) -> Quarantined:
        return Quarantined(source=self.source, line=line, reason=reason, raw=json.dumps(record, default=str)[:10000])


def labelled_lines(text: str, labels: dict[str, list[str]] | None = None) -> dict:
    """``Reasoning: ...`` / ``Precedent: ...`` / ``Conditions: a; b`` (or a JSON list) lines of a free-text note.

    ``labels`` maps each field to the labels that introduce it (``note_labels`` in the mapping)."""
    labels = labels or SpanMapping().note_labels
    field_of = {label.lower(): field for field, names in labels.items() for label in names}
    pattern = "|".join(re.escape(label) for label in sorted(field_of, key=len, reverse=True))
    found: dict = {}
    for match in re.finditer(rf"^\s*({pattern})\s*:\s*(.+)$", text, re.IGNORECASE | re.MULTILINE):
        key, value = field_of[match.group(1).lower()], match.group(2).strip()
        if key == "conditions":
            listed = json_text(value)
            value = listed if isinstance(listed, list) else [part.strip() for part in value.split(";") if part.strip()]
        found[key] = value
    return found or {"reasoning": text.strip()}


class SpanFileSource:
    """What the span file sources share: a path, a mapping, counts of what was cleaned and the
    accounting of rows; ``feed`` pushes the file's rows into an assembler (shared by a folder's files)."""

    def __init__(self, path: Path, mapping: SpanMapping | None = None, numeric_fields=(), limits=None):
        self.path = Path(path)
        self.limits = limits  # IngestLimits for each JSON line
        self.name = str(self.path)
        self.mapping = mapping or SpanMapping()
        self.numeric_fields = numeric_fields
        self.cleaned: Counter = Counter()
        self.index = None
        self.assembler: SpanAssembler | None = None

    def join(self, index) -> None:
        """Join with what an index (the trace store) holds: spans stored and annotations waiting."""
        self.index = index

    def feed(self, assembler: SpanAssembler) -> Iterator[Event | Quarantined]:
        """Every row of the file into the assembler; a row that is not valid JSON is read and quarantined."""
        assembler.source = self.name
        for number, row in read_rows(self.path, self.name, self.limits):
            if isinstance(row, Quarantined):
                assembler.read()
                yield row
            else:
                yield from self.add_row(assembler, number, row)

    def add_row(self, assembler: SpanAssembler, number: int, row: dict) -> Iterator[Event | Quarantined]:
        """One parsed row of this layout: count each record it holds as read, then add or quarantine it."""
        raise NotImplementedError

    def events(self) -> Iterator[Event | Quarantined]:
        self.assembler = SpanAssembler(self.mapping, self.name, self.cleaned, self.numeric_fields, self.index)
        yield from self.feed(self.assembler)
        yield from self.assembler.finish()
