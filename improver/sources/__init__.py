"""Trace sources: one small adapter per format, one contract.

A source turns some input into a stream of native events (``DecisionEvent`` /
``ReviewEvent``) and ``Quarantined`` items for what cannot be used. It never raises
for a single bad record; it raises ``TraceError`` only when the input cannot be
read at all.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator, Protocol

from improver.errors import TraceError
from improver.models import Event, Quarantined


class TraceSource(Protocol):
    """What every source offers. Optional: ``cleaned`` (a Counter of repairs made to dirty
    input, by kind), and for incremental sources ``resume(position)`` before reading and
    ``position`` after it, which the caller stores with ``TraceStore.set_cursor`` once
    everything read is stored."""

    name: str

    def events(self) -> Iterator[Event | Quarantined]: ...


def jsonl_rows(path: Path, source: str) -> Iterator[tuple[int, dict | Quarantined, str]]:
    """(line number, JSON object, line) for each non-empty line; a line that is not a JSON
    object comes as Quarantined. Raises TraceError only when the file cannot be opened."""
    try:
        handle = path.open("r", encoding="utf-8", errors="replace")
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error}") from error
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                yield number, Quarantined(source=source, line=number, reason=f"invalid JSON: {error.msg}", raw=line), line
                continue
            if not isinstance(row, dict):
                row = Quarantined(source=source, line=number, reason="not a JSON object", raw=line)
            yield number, row, line


NATIVE_TYPE = re.compile(r'"type"\s*:\s*"(decision|review)"')
SPAN_KEYS = re.compile(r'"(context\.span_id|span_id|spanId|annotation_name|context|attributes\.[\w.]+)"\s*:')


def sniff(path: Path) -> str:
    """'native', 'otlp' or 'openinference', from the first non-empty lines of a JSON(L) file."""
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for _ in range(20):
            head = handle.readline(65536)
            if not head:
                break
            if not head.strip():
                continue
            if '"resourceSpans"' in head[:4096]:
                return "otlp"
            if NATIVE_TYPE.search(head[:4096]):
                return "native"
            if SPAN_KEYS.search(head):
                return "openinference"
    return "native"


def open_source(spec: str, project=None) -> TraceSource:
    """The source for a path or URL given on the command line or to an MCP tool.

    ``phoenix+http(s)://host:port/project`` is a live Phoenix server; a folder or a
    ``.parquet`` file is an OpenInference export; a JSON(L) file is sniffed as native
    events, OTLP JSON or OpenInference spans. The project's ``sources:`` mapping and
    its numeric ``bands`` fields apply to span sources.
    """
    from improver.sources.mapping import SpanMapping
    from improver.sources.native import NativeJsonlSource

    mapping = SpanMapping.from_project(project) if project is not None else SpanMapping()
    numeric = list(project.config.bands) if project is not None else []
    if spec.split("://", 1)[0] in ("phoenix+http", "phoenix+https"):
        from improver.sources.phoenix import PhoenixSource, api_key_for

        named = project.remote_sources if project is not None else []
        return PhoenixSource(spec, mapping, numeric, api_key=api_key_for(spec, named))
    path = Path(spec)
    if not path.exists():
        raise TraceError(f"trace input {spec!r} not found; give a JSONL, OTLP JSON or parquet file, a folder of "
                         "span exports, or phoenix+http://HOST:PORT/PROJECT")
    kind = "openinference" if path.is_dir() or path.suffix == ".parquet" else sniff(path)
    if kind == "otlp":
        from improver.sources.otlp import OtlpJsonSource

        return OtlpJsonSource(path, mapping, numeric)
    if kind == "openinference":
        from improver.sources.openinference import OpenInferenceSource

        return OpenInferenceSource(path, mapping, numeric)
    return NativeJsonlSource(path)
