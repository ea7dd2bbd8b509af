"""Native trace JSONL (DESIGN.md): one decision or review event a line, read streaming."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from pydantic import ValidationError

from improver.models import DecisionEvent, Event, Quarantined, ReviewEvent
from improver.sources import FilePart, IngestLimits, jsonl_rows

EVENT_TYPES = {"decision": DecisionEvent, "review": ReviewEvent}
LAYOUT = "native"
EXPECTS = "native events with type decision|review and session_id"
KEYS = ("type", "session_id", "case", "decision", "reviewer", "reasoning", "precedent", "conditions")


def sniff(rows: list[dict], mapping=None) -> float:
    return sum(row.get("type") in EVENT_TYPES for row in rows) / len(rows) if rows else 0.0


def parse_event(data: object) -> Event:
    """A native event from a parsed JSON object; ValueError says which field is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    kind = data.get("type")
    if kind not in EVENT_TYPES:
        raise ValueError(f"type must be 'decision' or 'review', got {kind!r}")
    try:
        return EVENT_TYPES[kind].model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ValueError(f"invalid {kind} event: {problems}") from None


class NativeJsonlSource:
    def __init__(self, path: Path, limits: IngestLimits | None = None, part: FilePart | None = None):
        self.path = Path(path)
        self.name = str(self.path)
        self.limits = limits
        self.part = part  # only these lines (``sources.native_worker`` reads a file in two parts)
        self.rows_read = 0

    def events(self) -> Iterator[Event | Quarantined]:
        for item, _ in self.lines():
            yield item

    def lines(self) -> Iterator[tuple[Event | Quarantined, bytes | None]]:
        """Each item with the UTF-8 line its event was parsed from (None for a quarantined line),
        for the redaction screen (``Redactor.lines``)."""
        for number, row, line in jsonl_rows(self.path, self.name, self.limits, self.part):
            self.rows_read += 1
            if isinstance(row, Quarantined):
                yield row, None
                continue
            try:
                yield parse_event(row), line.encode("utf-8")
            except ValueError as error:
                yield Quarantined(source=self.name, line=number, reason=str(error), raw=line), None
