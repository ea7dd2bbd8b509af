"""Ingest throughput and memory per source: MB/s, spans/s and peak memory.

Writes, in a temporary folder, the procurement example's reviewed sessions as native
JSONL, a Phoenix span export (JSONL and parquet) and OTLP JSON, each padded with filler
LLM spans (as real agent traces are), then ingests each into a fresh project in a child
process and reports its peak resident memory (parquet compresses the filler, so its
MB/s is over the same data as JSONL: ``data_mb``). Default: a 500 MB span export, which must
ingest with memory well under 1 GB. ``--mb 50`` for a quick run.

The native JSONL is also ingested by its floor (json.loads and executemany into the same
schema, nothing else: no validation, redaction or fingerprints), and once with redaction off,
so the table shows the ingest beside its floor and what redaction costs: in wall seconds and in
the child's CPU seconds (``cpu_s``), which other work on a shared machine disturbs less. ``--native-only``
skips the span formats (e.g. ``--native-only --sessions 100000`` for the 100k figure).

    python bench/ingest.py [--mb 500] [--sessions 2000] [--native-only]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

FILLER_BYTES = 10_000


def cpu() -> float:
    """This process's CPU seconds (user + system): less disturbed than wall time by other work on the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def floor_in_child(spec: str, out) -> None:
    """The floor: json.loads per line and executemany into the trace store's schema, without the
    cyclic collector (as improver's own ingest stores its batches)."""
    import gc
    import sqlite3

    gc.disable()

    from improver.store import SCHEMA

    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(Path(folder) / "floor.sqlite")
        db.executescript(SCHEMA)
        db.execute("PRAGMA journal_mode=WAL")
        started, cpu_started = time.perf_counter(), cpu()
        decisions, reviews = [], []
        with open(spec, encoding="utf-8") as handle:
            for line in handle:
                e = json.loads(line)
                if e["type"] == "decision":
                    decisions.append((e["session_id"], json.dumps(e["case"]), e["decision"], e.get("confidence"),
                                      e.get("reasoning"), json.dumps(e.get("cited")), e.get("config_version"), e.get("ts")))
                else:
                    reviews.append((e["session_id"], e.get("reviewer"), e["decision"], e.get("reasoning"),
                                    e.get("precedent"), json.dumps(e.get("conditions")), e.get("ts"), str(len(reviews))))
        with db:
            db.executemany("INSERT OR IGNORE INTO decisions (session_id, case_json, decision, confidence, reasoning,"
                           " cited_json, config_version, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", decisions)
            db.executemany("INSERT OR IGNORE INTO reviews (session_id, reviewer, decision, reasoning, precedent,"
                           " conditions_json, ts, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", reviews)
        seconds = time.perf_counter() - started
    out.send({"seconds": seconds, "cpu": cpu() - cpu_started, "events": len(decisions) + len(reviews), "quarantined": 0,
              "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def ingest_in_child(project: str, spec: str, out, redaction: bool = True) -> None:
    from improver.workspace import Workspace

    if not redaction:
        import improver.redact

        improver.redact.Redactor.from_project = classmethod(lambda cls, project: None)
    started, cpu_started = time.perf_counter(), cpu()
    report = Workspace(project).ingest(spec)
    seconds = time.perf_counter() - started
    out.send({"seconds": seconds, "cpu": cpu() - cpu_started, "events": report.events, "quarantined": report.quarantined,
              "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def measure(folder: Path, spec: Path, spans: int, label: str, data_mb: float | None = None, kind: str = "ingest") -> dict:
    """Ingest ``spec`` into a fresh project; MB/s over ``data_mb`` (the JSONL size, for compressed parquet)."""
    from improver.demo import make_demo_project

    project = make_demo_project(folder / f"project-{label}", n=10)
    (project / ".improver" / "traces.sqlite").unlink(missing_ok=True)
    receive, send = multiprocessing.Pipe(duplex=False)
    if kind == "floor":
        target, args = floor_in_child, (str(spec), send)
    else:
        target, args = ingest_in_child, (str(project), str(spec), send, kind != "no redaction")
    child = multiprocessing.get_context("spawn").Process(target=target, args=args)
    child.start()
    result = receive.recv()
    child.join()
    size_mb = spec.stat().st_size / 1e6
    data_mb = data_mb or size_mb
    return {"source": label, "file_mb": round(size_mb, 1), "data_mb": round(data_mb, 1), "spans": spans,
            "events": result["events"], "seconds": round(result["seconds"], 2), "cpu_s": round(result["cpu"], 2),
            "mb_per_s": round(data_mb / result["seconds"], 1),
            "spans_per_s": round(spans / result["seconds"]), "peak_memory_mb": round(result["peak_mb"])}


def otlp_lines(rows, batch: int = 64):
    """Span rows as OTLP file-exporter lines (one export request per batch of spans)."""
    spans = []

    def flush():
        resource_spans = [{"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "bench"}, "spans": spans}]}]
        return json.dumps({"resourceSpans": resource_spans}) + "\n"

    for row in rows:
        if "annotation_name" in row:
            continue
        attributes = [{"key": k.removeprefix("attributes."), "value": {"stringValue": v}}
                      for k, v in row.items() if k.startswith("attributes.")]
        spans.append({"traceId": row["context.trace_id"], "spanId": row["context.span_id"], "name": row["name"],
                      "startTimeUnixNano": "1780000000000000000", "attributes": attributes})
        if len(spans) == batch:
            yield flush()
            spans = []
    if spans:
        yield flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="size of the span export to ingest")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--native-only", action="store_true", help="only the native JSONL and its floor")
    args = parser.parse_args(argv)
    from procurement.tracing import export_rows
    from procurement.simulate import write_traces

    filler = max(0, round(args.mb * 1e6 / args.sessions / FILLER_BYTES) - 1)
    rows_per_session = filler + 4
    spans = args.sessions * (filler + 2)
    results = []
    with tempfile.TemporaryDirectory(prefix="improver-bench-") as tmp:
        folder = Path(tmp)
        native = folder / "native.jsonl"
        write_traces(native, n=args.sessions, seed=7)
        results.append(measure(folder, native, 2 * args.sessions, "native jsonl (events)"))
        results.append(measure(folder, native, 2 * args.sessions, "native, redaction off", kind="no redaction"))
        results.append(measure(folder, native, 2 * args.sessions, "native floor (json+executemany)", kind="floor"))
        floor, floor_cpu = results[-1]["seconds"], results[-1]["cpu_s"]
        for row in results:  # tiny runs round the floor to 0 s: no ratio then
            row["x_floor"] = round(row["seconds"] / floor, 2) if floor else ""
            row["x_floor_cpu"] = round(row["cpu_s"] / floor_cpu, 2) if floor_cpu else ""
        if args.native_only:
            return report(results)

        export = folder / "spans.jsonl"
        with export.open("w", encoding="utf-8") as handle:
            for row in export_rows(args.sessions, 7, filler, FILLER_BYTES):
                handle.write(json.dumps(row) + "\n")
        results.append(measure(folder, export, spans, "phoenix export jsonl"))

        otlp = folder / "otlp.json"
        with otlp.open("w", encoding="utf-8") as handle:
            handle.writelines(otlp_lines(export_rows(args.sessions, 7, filler, FILLER_BYTES)))
        results.append(measure(folder, otlp, spans, "otlp json"))
        otlp.unlink()

        import pyarrow as pa
        import pyarrow.parquet as pq

        parquet = folder / "spans.parquet"
        writer = None
        chunk = []
        for row in export_rows(args.sessions, 7, filler, FILLER_BYTES):
            if "annotation_name" in row:
                row = dict(row, metadata=json.dumps(row["metadata"]))
            chunk.append(row)
            if len(chunk) >= 40 * rows_per_session:
                table = pa.Table.from_pylist(chunk, schema=writer.schema if writer else None)
                writer = writer or pq.ParquetWriter(parquet, table.schema)
                writer.write_table(table)
                chunk = []
        if chunk:
            table = pa.Table.from_pylist(chunk, schema=writer.schema if writer else None)
            writer = writer or pq.ParquetWriter(parquet, table.schema)
            writer.write_table(table)
        writer.close()
        results.append(measure(folder, parquet, spans, "phoenix export parquet", export.stat().st_size / 1e6))

    return report(results)


def report(results: list[dict]) -> int:
    columns = ("source", "file_mb", "data_mb", "spans", "events", "seconds", "x_floor", "cpu_s", "x_floor_cpu", "mb_per_s",
               "spans_per_s",
               "peak_memory_mb")
    print(" | ".join(columns))
    for row in results:
        print(" | ".join(str(row.get(c, "")) for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
