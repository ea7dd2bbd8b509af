"""OTLP JSON as an OpenTelemetry collector's file exporter writes it.

Each line is one export request: ``{"resourceSpans": [{"resource", "scopeSpans": [{"spans":
[...]}]}]}`` with ``traceId``, ``spanId``, ``name``, ``startTimeUnixNano`` and
``attributes`` as ``[{"key", "value": {"stringValue" | "intValue" | ...}}]``. Spans are
flattened to the OpenInference row shape and read with the same ``SpanMapping``; OTLP
carries no annotations, so reviews come from review spans (or from a Phoenix export).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterator

from improver.models import Event, Quarantined
from improver.sources.mapping import SpanAssembler, SpanFileSource
from improver.sources.openinference import read_rows


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


def _time(nanos) -> str | None:
    try:
        return datetime.fromtimestamp(int(nanos) / 1e9, tz=timezone.utc).isoformat()
    except (TypeError, ValueError):
        return None


def flat_span(span: dict) -> dict:
    """An OTLP span in the OpenInference row shape."""
    return {
        "name": span.get("name"),
        "context": {"span_id": span.get("spanId"), "trace_id": span.get("traceId")},
        "parent_id": span.get("parentSpanId") or None,
        "start_time": _time(span.get("startTimeUnixNano")),
        "end_time": _time(span.get("endTimeUnixNano")),
        "attributes": {kv.get("key"): any_value(kv.get("value", {})) for kv in span.get("attributes") or []
                       if isinstance(kv, dict)},
    }


class OtlpJsonSource(SpanFileSource):
    def events(self) -> Iterator[Event | Quarantined]:
        assembler = SpanAssembler(self.mapping, self.name, self.cleaned, self.numeric_fields)
        for number, row in read_rows(self.path, self.name):
            if isinstance(row, Quarantined):
                yield row
                continue
            if not isinstance(row.get("resourceSpans"), list):
                yield assembler.quarantine(number, "not an OTLP export request (no resourceSpans list)", row)
                continue
            for resource in row["resourceSpans"]:
                for scope in (resource or {}).get("scopeSpans") or []:
                    for span in (scope or {}).get("spans") or []:
                        if isinstance(span, dict):
                            yield from assembler.add_span(flat_span(span), number)
                        else:
                            yield assembler.quarantine(number, "span is not a JSON object", span)
        yield from assembler.finish()
