"""Trace sources: one small adapter per format, one contract.

A source turns some input into a stream of native events (``DecisionEvent`` /
``ReviewEvent``) and ``Quarantined`` items for what cannot be used. It never raises
for a single bad record; it raises ``TraceError`` only when the input cannot be
read at all.
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import IO, Iterator, NamedTuple, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field

from improver.errors import TraceError
from improver.models import Event, Quarantined


class TraceSource(Protocol):
    """What every source offers. Optional: ``cleaned`` (a Counter of repairs made to dirty
    input, by kind), and for incremental sources ``resume(position)`` before reading and
    ``position`` after it, which the caller stores with ``TraceStore.set_cursor`` once
    everything read is stored. Span sources (``mapping.SpanFileSource``) also take
    ``join(store)`` before reading, to meet spans and annotations stored by earlier ingests,
    and leave their ``assembler`` after it: the spans seen, the annotations still waiting and
    the accounting of every row read.

    A file layout is one module here with ``LAYOUT``, ``EXPECTS`` and ``KEYS`` (for the
    message when nothing matches), ``sniff(rows, mapping)`` (the share of sample rows it
    recognises) and ``SOURCE``, a ``SpanFileSource`` whose ``feed(assembler)`` pushes each row
    in as a span or an annotation; its name goes into ``LAYOUTS``."""

    name: str

    def events(self) -> Iterator[Event | Quarantined]: ...


class IngestLimits(BaseModel):
    """Limits on one line of JSON(L) trace input (``ingest:`` in improver.yaml); a line past one is
    quarantined with the reason and ingest goes on."""

    model_config = ConfigDict(extra="forbid")
    max_line_bytes: int = Field(64 * 2**20, ge=1, description="longest line read, in bytes")
    max_depth: int = Field(100, ge=1, le=500, description="deepest nesting of JSON objects and arrays in a line")


DEFAULT_LIMITS = IngestLimits()
BOM = b"\xef\xbb\xbf"
STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
BRACKET = re.compile(r"[\[\]{}]")
DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
LONG_INTEGER = b"0" * 19  # from 19 digits an integer may not fit in 64 bits


def too_deep(text: str, limit: int) -> bool:
    """Whether the JSON in ``text`` nests objects and arrays deeper than ``limit`` (brackets inside
    strings do not count; a line with fewer brackets than ``limit`` is not scanned)."""
    if text.count("{") + text.count("[") <= limit:
        return False
    depth = 0
    for bracket in BRACKET.findall(STRING.sub("", text)):
        depth += 1 if bracket in "{[" else -1
        if depth > limit:
            return True
    return False


def json_loads(text: str) -> object:
    """``json.loads``, parsed by orjson (about 3x faster) when that gives what json gives: not for
    a text with a 19-digit run (orjson reads integers past 64 bits as floats), nor for what orjson
    refuses (NaN, Infinity, lone surrogates, invalid JSON), which json reads or explains."""
    if len(text) < len(LONG_INTEGER) or LONG_INTEGER not in text.encode("utf-8", "surrogatepass").translate(DIGITS):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def loads(text: str, limits: IngestLimits = DEFAULT_LIMITS) -> object:
    """``json_loads`` that refuses JSON nested deeper than ``limits.max_depth``; ValueError says why."""
    if too_deep(text, limits.max_depth):
        raise ValueError(f"nested deeper than ingest.max_depth ({limits.max_depth})")
    try:
        return json_loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON: {error.msg}") from None
    except RecursionError:
        raise ValueError(f"nested too deep to parse (lower ingest.max_depth, now {limits.max_depth})") from None


def open_bytes(path: Path) -> IO[bytes]:
    """The file's bytes, through gzip when it is gzipped; TraceError when it cannot be opened."""
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rb") if gzipped else path.open("rb")
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error}") from error


class FilePart(NamedTuple):
    """The lines of a file that start at byte ``start`` and before ``end`` (None: the end of the
    file), the first of them the file's line ``first_line``."""

    start: int
    end: int | None
    first_line: int


def jsonl_rows(path: Path, source: str, limits: IngestLimits | None = None, part: FilePart | None = None
               ) -> Iterator[tuple[int, dict | Quarantined, str]]:
    """(line number, JSON object, line) for each non-empty line; a line that is not a JSON object
    comes as Quarantined with the reason: invalid JSON, not UTF-8, too long, nested too deep. A UTF-8
    byte order mark is skipped. Raises TraceError only when the file cannot be opened. With ``part``,
    only the lines that start in that byte range of an uncompressed file, numbered as in the whole file."""
    limits = limits or DEFAULT_LIMITS
    start, end, number = (part.start, part.end, part.first_line - 1) if part else (0, None, 0)
    with open_bytes(path) as handle:
        handle.seek(start)
        position = start
        while (end is None or position < end) and (raw := handle.readline(limits.max_line_bytes + 1)):
            number += 1
            position += len(raw)
            if position == len(raw) and raw.startswith(BOM):
                raw = raw[len(BOM):]
            if len(raw) > limits.max_line_bytes and not raw.endswith(b"\n"):
                skipped = _skip_line(handle)
                position += skipped
                size = len(raw) + skipped
                reason = f"line too long: {size} bytes, over ingest.max_line_bytes ({limits.max_line_bytes})"
                yield number, Quarantined(source=source, line=number, reason=reason, raw=as_text(raw[:10000])), ""
                continue
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                reason = f"not UTF-8: byte 0x{raw[error.start]:02x} at offset {error.start}; {REENCODE}"
                yield number, Quarantined(source=source, line=number, reason=reason, raw=as_text(raw)), ""
                continue
            try:
                row = loads(line, limits)
            except ValueError as error:
                yield number, Quarantined(source=source, line=number, reason=str(error), raw=line), line
                continue
            if not isinstance(row, dict):
                row = Quarantined(source=source, line=number, reason="not a JSON object", raw=line)
            yield number, row, line


REENCODE = "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"


def _skip_line(handle) -> int:
    """Read past the rest of an over-long line; how many bytes that was."""
    skipped = 0
    while chunk := handle.readline(1 << 20):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def as_text(raw: bytes) -> str:
    """Bytes as text for the quarantine, every byte that is not UTF-8 kept as a ``\\xNN`` escape."""
    return raw.decode("utf-8", errors="backslashreplace")


LAYOUTS = ("native", "otlp", "arize", "langsmith", "langfuse", "openinference")  # adapter modules, in the order they are tried


def _layouts():
    import importlib

    return {name: importlib.import_module(f"improver.sources.{name}") for name in LAYOUTS}


def sniff(path: Path, mapping=None) -> str:
    """The layout of a trace file, from its first rows: the adapter that recognises most of them.

    A binary file, or one whose first rows none parse, raises TraceError saying what was expected
    and found (an empty file is 'native'); a file whose rows match no layout raises TraceError
    naming the layouts tried, the closest one and the improver.yaml lines that map it."""
    from improver.sources.mapping import SpanMapping
    from improver.sources.rows import peek

    mapping = mapping or SpanMapping()
    refuse_binary(path)
    rows = peek(path)
    if not rows:
        from improver.sources.rows import read_rows

        first = next((row for _, row in read_rows(path)), None)
        if first is None:
            return "native"  # nothing in it: nothing to store
        raise TraceError(f"{path} is not a trace file: expected {EXPECTED}; found no row that parses in its first "
                         f"lines (line {first.line}: {first.reason}; it starts {first.raw[:60]!r})")
    layouts = _layouts()
    scores = {name: module.sniff(rows, mapping) for name, module in layouts.items()}
    best = max(scores, key=lambda name: scores[name])  # ties go to the first layout tried
    if scores[best] > 0:
        return best
    raise TraceError(unknown_layout(path, rows[0], layouts))


EXPECTED = ("trace rows: JSON lines, a JSON document or CSV (gzipped or not) or parquet, of native events or "
            "spans (OTLP, OpenInference, Arize, LangSmith, Langfuse)")


def refuse_binary(path: Path) -> None:
    """TraceError when a file that should hold text (not parquet) has a NUL byte in its first 64 KiB."""
    from improver.sources.rows import base_suffix

    if base_suffix(path) == ".parquet":
        return
    with open_bytes(path) as handle:
        try:
            head = handle.read(65536)
        except (OSError, EOFError) as error:  # a corrupt gzip stream
            raise TraceError(f"cannot read {path}: {error}") from error
    nul = head.find(b"\x00")
    if nul >= 0:
        raise TraceError(f"{path} is not a trace file: expected {EXPECTED}; found binary data (a NUL byte at offset {nul})")


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
    name_key = next((k for k in ("name", "type", "kind", "event", "step") if isinstance(row.get(k), str)), None)
    name = str(row[name_key]) if name_key else "<span name>"
    tried = "; ".join(f"{name_} ({module.EXPECTS})" for name_, module in layouts.items())
    yaml_lines = "\n".join([
        "sources:", "  spans:", f"    span_name: [{json.dumps(name_key or '<the key holding the span name>')}]",
        f"    decision_spans: [{json.dumps(name)}]", "    review_spans: []",
        *(f"    {field}: [{json.dumps(key)}]" for field, key in guessed.items())])
    return (f"{path}: no row of its first ones matches a trace layout I know (keys: {', '.join(keys[:12])}).\n"
            f"Tried: {tried}.\nClosest: {closest} (shares {overlap[closest]} keys). To read these rows as spans, "
            f"map them in improver.yaml, then check with `improver sources show {path}`:\n{yaml_lines}")


def file_source(path: Path, mapping=None, numeric=(), limits: IngestLimits | None = None) -> TraceSource:
    """The adapter for one trace file, by sniffing its layout."""
    from improver.sources.native import NativeJsonlSource

    kind = sniff(path, mapping)
    if kind == "native":
        return NativeJsonlSource(path, limits)
    module = _layouts()[kind]
    return module.SOURCE(path, mapping, numeric, limits)


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
    limits = project.config.ingest if project is not None else DEFAULT_LIMITS
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

        return FolderSource(path, mapping, numeric, limits)
    return file_source(path, mapping, numeric, limits)
