"""Trace sources: one small adapter per format, one contract.

A source turns some input into a stream of native events (``DecisionEvent`` /
``ReviewEvent``) and ``Quarantined`` items for what cannot be used. It never raises
for a single bad record; it raises ``TraceError`` only when the input cannot be
read at all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol

from improver.errors import TraceError
from improver.models import Event, Quarantined


class TraceSource(Protocol):
    name: str

    def events(self) -> Iterator[Event | Quarantined]: ...


def open_source(spec: str, mapping: dict | None = None) -> TraceSource:
    """The source for a path or URL given on the command line or to an MCP tool."""
    from improver.sources.native import NativeJsonlSource

    path = Path(spec)
    if not path.exists():
        raise TraceError(f"trace input {spec!r} not found; give a path to a JSONL file")
    return NativeJsonlSource(path)
