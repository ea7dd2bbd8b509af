"""OTLP JSON as OpenTelemetry writes it: the collector's file exporter or protobuf's ``MessageToJson``.

Each export request is ``{"resourceSpans": [{"resource", "scopeSpans": [{"spans":
[...]}]}]}`` with ``traceId``, ``spanId``, ``name``, ``startTimeUnixNano`` and
``attributes`` as ``[{"key", "value": {"stringValue" | "intValue" | ...}}]``. Requests may
come one a line, as one pretty-printed document, or as a JSON array of them; ids may be
hex (the OTLP JSON encoding) or base64 (protobuf's JSON mapping of bytes), and are read
as hex. Spans are flattened to the OpenInference row shape and read with the same
``SpanMapping``; OTLP carries no annotations, so reviews come from review spans or from an
annotation file ingested before or after (joined by span id in the trace store).
"""
from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timezone
from typing import Any, Iterator

from improver.models import Event, Quarantined
from improver.sources.mapping import SpanAssembler, SpanFileSource

LAYOUT = "otlp"
EXPECTS = "OTLP export requests: resourceSpans → scopeSpans → spans"
KEYS = ("resourceSpans", "scopeSpans", "spans", "traceId", "spanId")
HEX = re.compile(r"^[0-9a-fA-F]+$")


def sniff(rows: list[dict], mapping=None) -> float:
    return sum("resourceSpans" in r for r in rows) / len(rows) if rows else 0.0


def any_value(value: dict) -> Any:
    """The Python value of an OTLP ``AnyValue``."""
    if not isinstance(value, dict):
        return value
    for key in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])  # int64 travels as a string in OTLP JSON
    if "arrayValue" in value:
        return [any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return {kv["key"]: any_value(kv.get("value", {})) for kv in value["kvlistValue"].get("values", [])}
    return None


def hex_id(value, size: int) -> str | None:
    """A trace (16 bytes) or span (8 bytes) id as lowercase hex, from hex or base64."""
    if not isinstance(value, str) or not value:
        return None
    if len(value) == 2 * size and HEX.match(value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value
    return raw.hex() if len(raw) == size else value


def _time(nanos) -> str | None:
    try:
        return datetime.fromtimestamp(int(nanos) / 1e9, tz=timezone.utc).isoformat()
    except (TypeError, ValueError):
        return None


def flat_span(span: dict) -> dict:
    """An OTLP span in the OpenInference row shape."""
    return {
        "name": span.get("name"),
        "context": {"span_id": hex_id(span.get("spanId"), 8), "trace_id": hex_id(span.get("traceId"), 16)},
        "parent_id": hex_id(span.get("parentSpanId"), 8),
        "start_time": _time(span.get("startTimeUnixNano")),
        "end_time": _time(span.get("endTimeUnixNano")),
        "attributes": {kv.get("key"): any_value(kv.get("value", {})) for kv in span.get("attributes") or []
                       if isinstance(kv, dict)},
    }


class OtlpJsonSource(SpanFileSource):
    def add_row(self, assembler: SpanAssembler, number: int, row: dict) -> Iterator[Event | Quarantined]:
        """An export request: each of its spans counts as a row read."""
        if not isinstance(row.get("resourceSpans"), list):
            assembler.read()
            yield assembler.quarantine(number, "not an OTLP export request (no resourceSpans list)", row)
            return
        for resource in row["resourceSpans"]:
            for scope in (resource or {}).get("scopeSpans") or []:
                for span in (scope or {}).get("spans") or []:
                    assembler.read()
                    if isinstance(span, dict):
                        yield from assembler.add_span(flat_span(span), number)
                    else:
                        yield assembler.quarantine(number, "span is not a JSON object", span)


SOURCE = OtlpJsonSource
