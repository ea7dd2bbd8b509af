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


LAYOUTS = ("native", "otlp", "arize", "langsmith", "langfuse", "openinference")  # adapter modules, in the order they are tried


def _layouts():
    import importlib

    return {name: importlib.import_module(f"improver.sources.{name}") for name in LAYOUTS}


def sniff(path: Path, mapping=None) -> str:
    """The layout of a trace file, from its first rows: the adapter that recognises most of them.

    A file of no parseable rows is 'native' (its lines are quarantined with their reasons); a file
    whose rows match no layout raises TraceError naming the layouts tried, the closest one and the
    improver.yaml lines that map it."""
    from improver.sources.mapping import SpanMapping
    from improver.sources.rows import peek

    mapping = mapping or SpanMapping()
    rows = peek(path)
    if not rows:
        return "native"
    layouts = _layouts()
    scores = {name: module.sniff(rows, mapping) for name, module in layouts.items()}
    best = max(scores, key=lambda name: scores[name])  # ties go to the first layout tried
    if scores[best] > 0:
        return best
    raise TraceError(unknown_layout(path, rows[0], layouts))


def flat_keys(row: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in row.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys += flat_keys(value, f"{prefix}{key}.")
    return keys


GUESSES = {"span_id": r"span.?id|run.?id|^id$|(?<!session)_id$", "session": r"session|thread|conversation",
           "case": r"input|case|request|prompt", "decision": r"output|decision|result|answer"}


def unknown_layout(path: Path, row: dict, layouts: dict) -> str:
    """What to tell a user whose file matches no layout: layouts tried, the closest, the mapping to write."""
    keys = flat_keys(row)
    overlap = {name: len(set(keys) & set(module.KEYS)) for name, module in layouts.items()}
    closest = max(overlap, key=lambda name: overlap[name])
    guessed = {}
    for field, pattern in GUESSES.items():
        hit = next((k for k in keys if re.search(pattern, k.rsplit(".", 1)[-1], re.IGNORECASE)), None)
        guessed[field] = hit or f"<the key holding the {field.replace('_', ' ')}>"
    name = next((str(row[k]) for k in ("name", "type", "kind", "event") if isinstance(row.get(k), str)), "<span name>")
    tried = "; ".join(f"{name_} ({module.EXPECTS})" for name_, module in layouts.items())
    yaml_lines = "\n".join([
        "sources:", "  spans:", f"    decision_spans: [{json.dumps(name)}]", "    review_spans: []",
        *(f"    {field}: [{json.dumps(key)}]" for field, key in guessed.items())])
    return (f"{path}: no row of its first ones matches a trace layout I know (keys: {', '.join(keys[:12])}).\n"
            f"Tried: {tried}.\nClosest: {closest} (shares {overlap[closest]} keys). To read these rows as spans, "
            f"map them in improver.yaml, then check with `improver sources show {path}`:\n{yaml_lines}")


def file_source(path: Path, mapping=None, numeric=()) -> TraceSource:
    """The adapter for one trace file, by sniffing its layout."""
    from improver.sources.native import NativeJsonlSource

    kind = sniff(path, mapping)
    if kind == "native":
        return NativeJsonlSource(path)
    module = _layouts()[kind]
    return module.SOURCE(path, mapping, numeric)


def open_source(spec: str, project=None) -> TraceSource:
    """The source for a path or URL given on the command line or to an MCP tool.

    ``phoenix+http(s)://host:port/project`` is a live Phoenix server; a folder is read as
    one input (spans in one file, annotations in another); a file is sniffed as native
    events, OTLP JSON, Arize annotations or spans, or OpenInference spans and annotations
    (JSONL, JSON, CSV or parquet; gzipped or not). The project's ``sources:`` mapping and
    its numeric ``bands`` fields apply to span sources.
    """
    from improver.sources.mapping import SpanMapping

    mapping = SpanMapping.from_project(project) if project is not None else SpanMapping()
    numeric = list(project.config.bands) if project is not None else []
    if spec.split("://", 1)[0] in ("phoenix+http", "phoenix+https"):
        from improver.sources.phoenix import PhoenixSource, api_key_for

        named = project.remote_sources if project is not None else []
        return PhoenixSource(spec, mapping, numeric, api_key=api_key_for(spec, named))
    path = Path(spec)
    if not path.exists():
        raise TraceError(f"trace input {spec!r} not found; give a JSONL, JSON, CSV or parquet file (gzipped or not), "
                         "a folder of them, or phoenix+http://HOST:PORT/PROJECT")
    if path.is_dir():
        from improver.sources.folder import FolderSource

        return FolderSource(path, mapping, numeric)
    return file_source(path, mapping, numeric)
