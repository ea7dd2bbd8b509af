"""The procurement example traced with OpenInference, as a team using Phoenix would have it.

Two ways to get the example's reviewed sessions as OpenInference spans:

- ``trace_to_phoenix(endpoint, project, n, seed)`` runs the agent for real under
  ``openinference-instrumentation-langchain``: each request is a ``process.run`` span
  (``session.id`` = request id) holding the instrumented LangGraph spans, each review an
  ``override.run`` span, and the simulated reviewer's verdict is written as a "Reviewer
  Decision" span annotation with a note holding reasoning, precedent and conditions.
- ``write_span_export(path, n, seed)`` writes the same layout as a Phoenix span export
  (JSONL rows with ``context.span_id``, ``attributes.session.id``, … and annotation
  rows), optionally padded with filler LLM spans to reach production sizes.

The reviews come from ``simulate.write_traces`` (the agent is deterministic, so its
decisions there are the ones traced here). Run ``python -m procurement.tracing --help``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .simulate import write_traces

REVIEW_ANNOTATION = "Reviewer Decision"


def reviewed_sessions(n: int, seed: int) -> list[tuple[dict, dict]]:
    """(decision event, review event) per simulated session, in request order."""
    with tempfile.TemporaryDirectory(prefix="procurement-") as folder:
        path = Path(folder) / "traces.jsonl"
        write_traces(path, n=n, seed=seed)
        events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    decisions = {e["session_id"]: e for e in events if e["type"] == "decision"}
    return [(decisions[e["session_id"]], e) for e in events if e["type"] == "review"]


def review_output(review: dict) -> dict:
    return {"decision": review["decision"], "reasoning": review["reasoning"],
            "precedent": review["precedent"], "conditions": review["conditions"]}


def review_note(review: dict) -> str:
    """The reviewer's note, as the free text a person writes in Phoenix."""
    lines = [f"Reasoning: {review['reasoning']}"]
    if review["precedent"]:
        lines.append(f"Precedent: {review['precedent']}")
    if review["conditions"]:
        lines.append("Conditions: " + json.dumps(review["conditions"]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- file export

def _span(name: str, span_id: str, trace_id: str, session: str, ts: str, inputs, outputs, parent=None, kind="CHAIN") -> dict:
    return {"name": name, "span_kind": kind, "parent_id": parent, "start_time": ts, "end_time": ts,
            "status_code": "OK", "context.span_id": span_id, "context.trace_id": trace_id,
            "attributes.session.id": session, "attributes.openinference.span.kind": kind,
            "attributes.input.value": json.dumps(inputs), "attributes.input.mime_type": "application/json",
            "attributes.output.value": json.dumps(outputs), "attributes.output.mime_type": "application/json"}


def export_rows(n: int = 130, seed: int = 7, filler_spans: int = 0, filler_bytes: int = 0) -> Iterator[dict]:
    """Phoenix span-export rows (spans, then their annotations) for n reviewed sessions."""
    padding = "x" * filler_bytes
    for index, (decision, review) in enumerate(reviewed_sessions(n, seed)):
        session = decision["session_id"]
        trace, run_id, review_id = f"{index:032x}", f"a{index:015x}", f"b{index:015x}"
        yield _span("process.run", run_id, trace, session, decision["ts"], {"case": decision["case"]},
                    {k: decision[k] for k in ("decision", "confidence", "reasoning", "cited")})
        for filler in range(filler_spans):
            yield _span("ChatModel", f"c{index:07x}{filler:08x}", trace, session, decision["ts"],
                        {"messages": [padding]}, {"text": "ok"}, parent=run_id, kind="LLM")
        yield _span("override.run", review_id, f"{index + n:032x}", session, review["ts"],
                    {"agent": decision["decision"]}, review_output(review))
        yield {"span_id": review_id, "annotation_name": REVIEW_ANNOTATION, "annotator_kind": "HUMAN",
               "result.label": review["decision"], "result.score": None, "result.explanation": review["reasoning"],
               "metadata": {"reviewer": review["reviewer"]}, "identifier": "", "updated_at": review["ts"]}
        yield {"span_id": review_id, "annotation_name": "note", "annotator_kind": "HUMAN",
               "result.explanation": review_note(review), "metadata": {}, "identifier": f"note-{session}",
               "updated_at": review["ts"]}


def write_span_export(path: str | Path, n: int = 130, seed: int = 7, filler_spans: int = 0, filler_bytes: int = 0) -> int:
    """Write ``export_rows`` as JSONL; returns the number of rows."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for row in export_rows(n, seed, filler_spans, filler_bytes):
            handle.write(json.dumps(row) + "\n")
            count += 1
    return count


# --------------------------------------------------------------------------- OTLP files + Arize annotations

ARIZE_COLUMNS = ("context.span_id", "annotation.Reviewer Decision.label", "annotation.Reviewer Decision.updated_by",
                 "annotation.Reviewer Confidence.label", "annotation.Reviewer Name.label", "annotation.notes")


def trace_to_otlp(n: int = 130, seed: int = 7) -> tuple[list, list[dict]]:
    """Run the instrumented agent on n requests as the seed demo logs them; returns (spans, annotations).

    The spans are the OpenTelemetry SDK's finished spans from the real OpenInference LangChain
    instrumentation: a ``process.run`` span per request whose output is
    ``{"recommendation", "recommendation_reasoning", "confidence", "cited"}``, the LangGraph
    spans under it, and for each override an ``override.run`` span (the agent's re-run once told
    the reviewer's decision: it holds the decision but not the reviewer, reasoning or precedent).
    The annotations are the human reviews as rows for the Arize SDK's annotations DataFrame,
    keyed by the ``process.run`` span id (columns ``ARIZE_COLUMNS``).
    """
    from openinference.instrumentation.langchain import LangChainInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .agent import decide

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    tracer = provider.get_tracer("procurement")
    annotations = []
    try:
        for decision, review in reviewed_sessions(n, seed):
            session, case = decision["session_id"], decision["case"]
            with tracer.start_as_current_span("process.run", attributes={
                    "openinference.span.kind": "CHAIN", "session.id": session,
                    "input.value": json.dumps({"case": case}), "input.mime_type": "application/json"}) as span:
                result = decide(case)
                span.set_attribute("output.value", json.dumps({
                    "recommendation": result["decision"], "recommendation_reasoning": result["reasoning"],
                    "confidence": result["confidence"], "cited": result["cited"]}))
                span.set_attribute("output.mime_type", "application/json")
                span_id = format(span.get_span_context().span_id, "016x")
            if review["decision"] != result["decision"]:
                with tracer.start_as_current_span("override.run", attributes={
                        "openinference.span.kind": "CHAIN", "session.id": session,
                        "input.value": json.dumps({"case": case, "reviewer_decision": review["decision"]}),
                        "output.value": json.dumps({"recommendation": review["decision"],
                                                    "recommendation_reasoning": "Re-run with the reviewer's decision."}),
                        "output.mime_type": "application/json"}):
                    pass
            annotations.append(dict(zip(ARIZE_COLUMNS, (
                span_id, review["decision"], review["reviewer"], "high", review["reviewer"], review_note(review)))))
    finally:
        provider.force_flush()
        instrumentor.uninstrument()
        provider.shutdown()
    return list(exporter.get_finished_spans()), annotations


def write_otlp_json(path: str | Path, spans: list, pretty: bool = False, per_request: int = 50) -> None:
    """Write spans as protobuf's JSON of OTLP export requests: one request a line (``per_request``
    spans each), or with ``pretty`` one indented document, as ``MessageToJson`` writes it (base64 ids)."""
    from google.protobuf.json_format import MessageToJson
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    if pretty:
        Path(path).write_text(MessageToJson(encode_spans(spans)), encoding="utf-8")
        return
    with Path(path).open("w", encoding="utf-8") as handle:
        for start in range(0, len(spans), per_request):
            handle.write(MessageToJson(encode_spans(spans[start:start + per_request]), indent=None) + "\n")


# --------------------------------------------------------------------------- live Phoenix

def trace_to_phoenix(endpoint: str, project: str, n: int = 30, seed: int = 7, first: int = 0, last: int | None = None,
                     timeout: float = 120.0, reviewed: bool = True) -> list[str]:
    """Run the instrumented agent on the n requests (``first`` to ``last`` of them) into Phoenix and
    annotate their reviews (with ``reviewed=False`` only the agent's spans: live traffic nobody
    reviewed yet); returns the session ids.

    ``endpoint`` is the server's base URL (``http://127.0.0.1:6006``); spans go by OTLP/HTTP
    to ``{endpoint}/v1/traces``. Annotations are written once Phoenix has stored their spans.
    """
    import httpx
    from openinference.instrumentation.langchain import LangChainInstrumentor
    from openinference.semconv.resource import ResourceAttributes
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from .agent import decide

    provider = TracerProvider(resource=Resource({ResourceAttributes.PROJECT_NAME: project}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{endpoint}/v1/traces")))
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    tracer = provider.get_tracer("procurement")
    annotations, sessions = [], []
    try:
        for decision, review in reviewed_sessions(n, seed)[first:last]:
            session, case = decision["session_id"], decision["case"]
            sessions.append(session)
            with tracer.start_as_current_span("process.run", attributes={
                    "openinference.span.kind": "CHAIN", "session.id": session,
                    "input.value": json.dumps({"case": case}), "input.mime_type": "application/json"}) as span:
                result = decide(case)
                span.set_attribute("output.value", json.dumps(result))
                span.set_attribute("output.mime_type", "application/json")
            if not reviewed:
                continue
            with tracer.start_as_current_span("override.run", attributes={
                    "openinference.span.kind": "CHAIN", "session.id": session, "user.id": review["reviewer"],
                    "input.value": json.dumps({"agent": result["decision"]}),
                    "output.value": json.dumps(review_output(review)), "output.mime_type": "application/json"}) as span:
                span_id = format(span.get_span_context().span_id, "016x")
            annotations.append((session, span_id, review))
    finally:
        provider.force_flush()
        instrumentor.uninstrument()
        provider.shutdown()
    with httpx.Client(base_url=endpoint, timeout=30) as client:
        for session, span_id, review in annotations:
            annotation = {"span_id": span_id, "name": REVIEW_ANNOTATION, "annotator_kind": "HUMAN", "identifier": "",
                          "result": {"label": review["decision"], "explanation": review["reasoning"]},
                          "metadata": {"reviewer": review["reviewer"]}}
            _post_when_stored(client, "/v1/span_annotations", {"data": [annotation]}, timeout)
            note = {"span_id": span_id, "note": review_note(review), "identifier": f"review-{session}"}
            _post_when_stored(client, "/v1/span_notes", {"data": note}, timeout)
    return sessions


def _post_when_stored(client, path: str, body: dict, timeout: float) -> None:
    """POST an annotation or note (sync=True), retrying while Phoenix has not stored the span yet."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.post(path, params={"sync": "true"}, json=body)
        if response.status_code < 400:
            return
        if response.status_code != 404 or time.monotonic() > deadline:
            raise RuntimeError(f"Phoenix refused the annotations ({response.status_code}): {response.text[:300]}")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m procurement.tracing", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=130)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--phoenix", help="Phoenix base URL, e.g. http://127.0.0.1:6006 (default: write a file)")
    parser.add_argument("--project", default="procurement", help="Phoenix project name")
    parser.add_argument("--out", default="spans.jsonl", help="span export file to write without --phoenix")
    parser.add_argument("--otlp", help="run the instrumented agent and write its spans here as OTLP JSON (pretty-printed)")
    parser.add_argument("--arize", help="with --otlp: write the reviews here as the Arize SDK's annotations DataFrame "
                                        "(.parquet, .csv or .jsonl)")
    args = parser.parse_args(argv)
    if args.otlp:
        spans, annotations = trace_to_otlp(args.n, args.seed)
        write_otlp_json(args.otlp, spans, pretty=True)
        print(f"wrote {len(spans)} spans to {args.otlp}")
        if args.arize:
            import pandas as pd

            frame, path = pd.DataFrame(annotations, columns=list(ARIZE_COLUMNS)), Path(args.arize)
            if path.suffix == ".parquet":
                frame.to_parquet(path)
            elif path.suffix == ".csv":
                frame.to_csv(path, index=False)
            else:
                frame.to_json(path, orient="records", lines=True)
            print(f"wrote {len(frame)} annotation rows to {path}")
    elif args.phoenix:
        sessions = trace_to_phoenix(args.phoenix.rstrip("/"), args.project, args.n, args.seed)
        print(f"traced {len(sessions)} sessions into {args.phoenix} project {args.project}")
    else:
        print(f"wrote {write_span_export(args.out, args.n, args.seed)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
