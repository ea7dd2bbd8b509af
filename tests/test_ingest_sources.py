"""Span sources: Phoenix exports (JSONL, parquet), OTLP JSON, mappings, dirty data, resuming."""
import gzip
import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from improver.demo import make_demo_project
from improver.sources import open_source
from improver.sources.openinference import OpenInferenceSource
from improver.sources.otlp import OtlpJsonSource
from improver.store import TraceStore
from improver.workspace import Workspace
from procurement.tracing import export_rows, write_span_export

N = 40


@pytest.fixture
def project(tmp_path) -> Path:
    return make_demo_project(tmp_path / "p", n=N)


def stored(project: Path) -> list[tuple]:
    with sqlite3.connect(project / ".improver" / "traces.sqlite") as db:
        return (db.execute("SELECT * FROM decisions ORDER BY session_id").fetchall()
                + db.execute("SELECT session_id, reviewer, decision, reasoning, precedent, conditions_json, ts"
                             " FROM reviews ORDER BY session_id").fetchall())


def native_sessions(project: Path, tmp_path: Path):
    other = make_demo_project(tmp_path / "native", n=N)
    ws = Workspace(other)
    ws.ingest(str(other / "traces.jsonl"))
    return [asdict(s) for s in ws.sessions]


def test_phoenix_span_export_reads_like_the_native_traces(project, tmp_path):
    write_span_export(tmp_path / "spans.jsonl", n=N, filler_spans=2, filler_bytes=50)
    assert isinstance(open_source(str(tmp_path / "spans.jsonl")), OpenInferenceSource)
    ws = Workspace(project)
    report = ws.ingest(str(tmp_path / "spans.jsonl"))
    assert (report.decisions_new, report.reviews_new, report.quarantined, dict(report.cleaned)) == (N, N, 0, {})
    assert [asdict(s) for s in ws.sessions] == native_sessions(project, tmp_path)


def test_parquet_export_with_annotations_in_their_own_file(project, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(export_rows(n=N))
    folder = tmp_path / "export"
    folder.mkdir()
    spans = [r for r in rows if "annotation_name" not in r]
    notes = [dict(r, metadata=json.dumps(r["metadata"])) for r in rows if "annotation_name" in r]
    pq.write_table(pa.Table.from_pylist(spans), folder / "spans.parquet", row_group_size=25)
    pq.write_table(pa.Table.from_pylist(notes), folder / "annotations.parquet")
    ws = Workspace(project)
    report = ws.ingest(str(folder))
    assert (report.decisions_new, report.reviews_new, report.quarantined) == (N, N, 0)
    assert [asdict(s) for s in ws.sessions] == native_sessions(project, tmp_path)


def otlp_line(spans: list[dict]) -> str:
    def value(v):
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        return {"stringValue": v}

    def otlp(row):
        attributes = {k.removeprefix("attributes."): v for k, v in row.items() if k.startswith("attributes.")}
        return {"traceId": row["context.trace_id"], "spanId": row["context.span_id"], "name": row["name"],
                "startTimeUnixNano": "1780000000000000000", "endTimeUnixNano": "1780000000500000000",
                "attributes": [{"key": k, "value": value(v)} for k, v in attributes.items()]}
    return json.dumps({"resourceSpans": [{"resource": {"attributes": []},
                                          "scopeSpans": [{"scope": {"name": "t"}, "spans": [otlp(s) for s in spans]}]}]})


def test_otlp_file_exporter_output_with_reviews_as_spans(project, tmp_path):
    spans = [r for r in export_rows(n=N) if "annotation_name" not in r]
    path = tmp_path / "otlp.json"
    path.write_text("\n".join(otlp_line(spans[i:i + 16]) for i in range(0, len(spans), 16)) + "\n{\"resourceSpans\": [{\"sco\n")
    assert isinstance(open_source(str(path)), OtlpJsonSource)
    ws = Workspace(project)
    report = ws.ingest(str(path))
    assert (report.decisions_new, report.reviews_new, report.quarantined) == (N, N, 1)
    assert report.quarantine_reasons == {"invalid JSON": 1}
    native = {s["session_id"]: s for s in native_sessions(project, tmp_path)}
    for session in ws.sessions:
        assert (session.human_decision, session.precedent, session.conditions) == (
            native[session.session_id]["human_decision"], native[session.session_id]["precedent"],
            native[session.session_id]["conditions"])


def test_mapping_in_improver_yaml_reads_a_teams_own_layout(project, tmp_path):
    data = yaml.safe_load((project / "improver.yaml").read_text())
    data["sources"] = {"spans": {"decision_spans": "agent.decide", "review_spans": [], "review_annotations": ["verdict"],
                                 "session": "attributes.conversation.key", "case": "attributes.request",
                                 "decision": "attributes.result.choice", "reviewer": "metadata.who"}}
    (project / "improver.yaml").write_text(yaml.safe_dump(data))
    rows = [{"name": "agent.decide", "context": {"span_id": "s1"},
             "attributes": {"conversation": {"key": "PR-9"}, "request": {"vendor": "Acme", "amount": "1,200"},
                            "result": '{"choice": "approve"}'}},
            {"annotation_name": "verdict", "span_id": "s1", "result": {"label": "reject", "explanation": "Too pricey"},
             "metadata": '{"who": "sam"}'}]
    (tmp_path / "team.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    ws = Workspace(project)
    report = ws.ingest(str(tmp_path / "team.jsonl"))
    assert (report.decisions_new, report.reviews_new) == (1, 1)
    assert report.cleaned == {"number as text": 1}  # amount is a declared band, so it is a number
    [session] = ws.sessions
    assert (session.case, session.agent_decision, session.human_decision, session.reviewer, session.human_reasoning) == (
        {"vendor": "Acme", "amount": 1200.0}, "approve", "reject", "sam", "Too pricey")


def test_dirty_json_is_cleaned_or_quarantined_with_reasons_never_dropped(project, tmp_path):
    good = list(export_rows(n=3))
    runs = {r["attributes.session.id"]: r for r in good if r.get("name") == "process.run"}
    first, second, third = (runs[k] for k in sorted(runs))
    second["attributes.output.value"] = "Sure! Here is my answer:\n```json\n" + second["attributes.output.value"] + "\n```"
    third["attributes.output.value"] = "I think we should approve this one."  # an LLM answer that is no JSON
    first["attributes.output.value"] = json.dumps(dict(json.loads(first["attributes.output.value"]), confidence=0.9,
                                                       cited="policy:approval-tiers"))
    first["attributes.input.value"] = first["attributes.input.value"].replace('"amount": ', '"amount": NaN, "was": ')
    lines = [json.dumps(r) for r in good]
    lines[0] = lines[0].replace('{"name": ', '{"attributes.llm.cost": NaN, "name": ', 1)  # NaN, as pandas writes it
    lines.insert(2, lines[2][: len(lines[2]) // 2])  # a truncated line
    lines.append(json.dumps({"annotation_name": "Reviewer Decision", "span_id": "nowhere", "result.label": "approve"}))
    lines.append(json.dumps({"name": "process.run", "context.span_id": "x1"}))  # no session
    lines.append("[1, 2]")
    (tmp_path / "dirty.jsonl").write_text("\n".join(lines) + "\n")
    report = Workspace(project).ingest(str(tmp_path / "dirty.jsonl"))
    assert report.cleaned == {"JSON inside text": 1, "NaN or infinity": 1, "number where text belongs": 1,
                              "text where a list belongs": 1}
    assert report.quarantine_reasons == {
        "invalid JSON": 1, "not a JSON object": 1, "process.run span without session id": 1,
        "no decision in the agent's output (not JSON or no decision field)": 1}
    assert (report.decisions_new, report.reviews_new, report.quarantined) == (2, 3, 4)
    assert (report.rows_waiting, report.waiting_for) == (1, ["span nowhere"])  # its span may come in a later ingest
    assert report.accounted() and report.rows_read == len(lines)
    with TraceStore(project / ".improver" / "traces.sqlite") as store:
        reasons = {q["reason"] for q in store.quarantine()}
        assert len(reasons) == 4 and all(q["raw"] for q in store.quarantine())
    sessions = {s.session_id: s for s in Workspace(project).sessions}
    assert sessions[first["attributes.session.id"]].agent_confidence == "0.9"
    assert sessions[first["attributes.session.id"]].case["amount"] is None


def test_reingest_stores_once_and_an_interrupted_ingest_resumes(project, tmp_path, monkeypatch):
    import improver.store

    write_span_export(tmp_path / "spans.jsonl", n=N)
    complete = tmp_path / "complete"
    complete.mkdir()
    whole = make_demo_project(complete / "p", n=N)
    Workspace(whole).ingest(str(tmp_path / "spans.jsonl"))

    monkeypatch.setattr(improver.store, "BATCH", 7)
    written = []
    original = TraceStore._write

    def crash_after_three_batches(self, batch, report):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(len(batch))
        original(self, batch, report)

    monkeypatch.setattr(TraceStore, "_write", crash_after_three_batches)
    with pytest.raises(KeyboardInterrupt):
        Workspace(project).ingest(str(tmp_path / "spans.jsonl"))
    monkeypatch.setattr(TraceStore, "_write", original)
    assert 0 < len(stored(project)) < 2 * N
    resumed = Workspace(project).ingest(str(tmp_path / "spans.jsonl"))
    assert resumed.duplicates == 21
    assert stored(project) == stored(whole)
    again = Workspace(project).ingest(str(tmp_path / "spans.jsonl"))
    assert (again.decisions_new, again.reviews_new, again.duplicates) == (0, 0, 2 * N)
    assert stored(project) == stored(whole)


def test_lines_are_parsed_to_exactly_what_json_loads_gives():
    """orjson parses most lines; what it would read differently (integers past 64 bits, NaN,
    lone surrogates, duplicate keys) gives json's value, and bad JSON json's reason."""
    import json as stdlib_json

    from improver.sources import loads

    texts = ['{"a": 18446744073709551616, "b": -9223372036854775809, "c": 123456789012345678901234567890}',
             '{"a": 18446744073709551615, "b": 1e400, "c": NaN, "d": -Infinity}', '{"a": 1, "a": 2}',
             '{"s": "\\ud800 lone", "t": "caf\\u00e9 \\"q\\" \\\\ \\/", "u": "日本"}', '[1, 2.5, -0, 0.1e-400, 1E2]',
             '{"x": 9007199254740993.0, "y": 2.2250738585072011e-308, "n": null, "f": false, "deep": [[{"k": []}]]}',
             '"just a string"', '{"amount": 43629.0, "ts": "2026-06-02T09:00:00Z"}']
    for text in texts:
        assert repr(loads(text)) == repr(stdlib_json.loads(text)), text
    for bad in ('{"a": 1,}', '{"a": tru}', "{'a': 1}"):
        with pytest.raises(ValueError) as error:
            loads(bad)
        with pytest.raises(stdlib_json.JSONDecodeError) as expected:
            stdlib_json.loads(bad)
        assert str(error.value) == f"invalid JSON: {expected.value.msg}"


def _native_file_of_every_kind(project: Path, path: Path) -> Path:
    """The demo's native traces with PII, a duplicate, a conflicting decision and lines to quarantine."""
    lines = (project / "traces.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["case"]["justification"] = "Quote from mia.lopez@vendor.example, card 4111 1111 1111 1111"
    conflicting = dict(first, decision="reject", ts="2099-01-01T00:00:00Z")
    lines[0] = "\ufeff" + json.dumps(first)  # after a byte order mark
    lines.insert(3, "{not json")
    lines += [lines[1], json.dumps(conflicting), "", "{not json, from mia.lopez@vendor.example", '{"type": "vote"}', "[1]"]
    text = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(text) if path.suffix == ".gz" else text)
    return path


@pytest.mark.parametrize("name", ["all.jsonl", "all.jsonl.gz"])
def test_a_large_native_file_read_in_two_processes_stores_what_reading_it_in_one_stores(tmp_path, monkeypatch, name):
    from improver.sources import native_worker

    here, there = (make_demo_project(tmp_path / name, n=N) for name in ("here", "there"))
    traces = _native_file_of_every_kind(here, tmp_path / name)
    assert (native_worker.split(traces) is None) == name.endswith(".gz")  # gzipped: the worker reads it whole
    reports = {}
    for project, threshold in ((here, 2**62), (there, 0)):
        monkeypatch.setattr(native_worker, "PARALLEL_FROM", threshold)
        reports[project] = Workspace(project).ingest(str(traces))
    assert native_worker.wanted(open_source(str(traces), None))
    mine, theirs = (reports[p].as_dict() for p in (here, there))
    assert mine == theirs and mine["redacted"] == {"email": 3, "card": 2}
    assert (mine["quarantined"], mine["conflicting_decisions"], mine["rows_read"]) == (4, 1, 2 * N + 6)
    with sqlite3.connect(here / ".improver" / "traces.sqlite") as a, sqlite3.connect(there / ".improver" / "traces.sqlite") as b:
        for table in ("decisions", "decision_history", "reviews", "quarantine"):
            assert a.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall() == \
                b.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()


def test_a_worker_that_dies_while_reading_keeps_what_was_stored_and_says_to_ingest_again(tmp_path, monkeypatch):
    from improver.errors import TraceError
    from improver.sources import native_worker

    project = make_demo_project(tmp_path / "p", n=N)
    monkeypatch.setattr(native_worker, "PARALLEL_FROM", 0)
    monkeypatch.setattr(native_worker, "WORKER", "import os; os._exit(3)")
    with pytest.raises(TraceError, match="exited with code 3 before the end.*run the same ingest again"):
        Workspace(project).ingest(str(project / "traces.jsonl"))
    monkeypatch.undo()
    kept = len(stored(project))  # the part read in this process
    assert 0 < kept < 2 * N
    report = Workspace(project).ingest(str(project / "traces.jsonl"))
    assert report.decisions_new + report.reviews_new + kept == 2 * N and report.duplicates == kept


def test_the_worker_rows_waiting_while_this_process_reads_its_part_are_bounded():
    import queue
    import threading
    from multiprocessing import Pipe

    from improver.sources.native_worker import _receive

    inbox, outbox = Pipe(duplex=False)
    for k in range(5):
        outbox.send_bytes(b"batch %d" % k)
    outbox.close()
    received, stop = queue.Queue(2), threading.Event()
    reader = threading.Thread(target=_receive, args=(inbox, received, stop), daemon=True)
    reader.start()
    reader.join(0.5)
    assert reader.is_alive() and received.full()  # the worker's next batches wait in the pipe
    assert [received.get(timeout=5) for _ in range(6)] == [b"batch %d" % k for k in range(5)] + [None]
    reader.join(5)
    assert not reader.is_alive()

    inbox, outbox = Pipe(duplex=False)
    for k in range(5):
        outbox.send_bytes(b"more")
    received = queue.Queue(1)
    reader = threading.Thread(target=_receive, args=(inbox, received, stop := threading.Event()), daemon=True)
    reader.start()
    stop.set()  # this process stopped reading (an error): the reader ends though the queue is full
    reader.join(5)
    assert not reader.is_alive()


def test_a_long_line_across_the_split_and_crlf_line_ends_read_in_two_processes_as_in_one(tmp_path, monkeypatch):
    from improver.sources import native_worker

    here, there = (make_demo_project(tmp_path / name, n=N) for name in ("here", "there"))
    for project in (here, there):
        config = yaml.safe_load((project / "improver.yaml").read_text())
        config["ingest"] = {"max_line_bytes": 2000}
        (project / "improver.yaml").write_text(yaml.safe_dump(config))
    lines = (here / "traces.jsonl").read_text().splitlines()
    lines.insert(len(lines) // 5, json.dumps({"type": "review", "session_id": "x", "reasoning": "y" * 9000}))
    traces = tmp_path / "crlf.jsonl"
    traces.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    start = native_worker.split(traces).start  # the worker's part starts past the quarter: after the long line
    assert start > traces.read_bytes().index(b'"y') + 9000
    reports = {}
    for project, threshold in ((here, 2**62), (there, 0)):
        monkeypatch.setattr(native_worker, "PARALLEL_FROM", threshold)
        reports[project] = Workspace(project).ingest(str(traces)).as_dict()
    assert reports[here] == reports[there] and reports[here]["quarantine_reasons"] == {"line too long": 1}
    assert stored(here) == stored(there)
    with sqlite3.connect(here / ".improver" / "traces.sqlite") as a, sqlite3.connect(there / ".improver" / "traces.sqlite") as b:
        assert a.execute("SELECT line, reason FROM quarantine").fetchall() == b.execute("SELECT line, reason FROM quarantine").fetchall()
