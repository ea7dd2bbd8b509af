"""Ingest never loses data silently: each bad input is quarantined with its reason or refused with a
clear message, and every record read is accounted for (read = stored + duplicates + quarantined).
Real files in tmp dirs, through the CLI and the real MCP client."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from typer.testing import CliRunner

import improver.cli  # noqa: F401  (registers the commands)
from improver.cli.app import app
from improver.mcp import build_server
from improver.store import TraceStore
from improver.workspace import Workspace

DEEP = b'{"type": "decision", "session_id": "D1", "case": {"x": ' + b"[" * 5000 + b"]" * 5000 + b'}, "decision": "a"}'


def decision(sid: str, choice: str = "approve", ts: str = "2026-01-01T00:00:00Z") -> dict:
    return {"type": "decision", "session_id": sid, "case": {"amount": 10}, "decision": choice, "ts": ts}


def review(sid: str, choice: str = "approve") -> dict:
    return {"type": "review", "session_id": sid, "reviewer": "sam", "decision": choice, "ts": "2026-01-02T00:00:00Z"}


def lines(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    (tmp_path / "improver.yaml").write_text("target:\n  callable: agent:decide\n  config: config\n")
    return tmp_path


def ingest(project: Path, name: str, data: bytes):
    """`improver ingest FILE` on a file holding ``data``; the CLI output and the IngestReport."""
    path = project / name
    path.write_bytes(data)
    result = CliRunner().invoke(app, ["ingest", str(path), "--project", str(project)])
    assert result.exit_code == 0, (result.output, result.exception)
    with TraceStore(project / ".improver" / "traces.sqlite") as store:
        return result.output, store


def accounted(project: Path, data: bytes):
    """The report of ingesting ``data``, checked: every non-empty line is a row read, and every row
    and event is accounted for (stored, already stored or quarantined)."""
    report = Workspace(project).ingest(str(write(project, "t.jsonl", data)))
    assert report.rows_read == sum(1 for line in data.splitlines() if line.strip())
    assert report.accounted() and report.unaccounted == 0
    assert report.rows_read == report.stored + report.duplicates + report.quarantined
    return report


def write(project: Path, name: str, data: bytes) -> Path:
    (project / name).write_bytes(data)
    return project / name


def quarantine(project: Path) -> list[tuple]:
    with sqlite3.connect(project / ".improver" / "traces.sqlite") as db:
        return db.execute("SELECT line, reason, raw FROM quarantine ORDER BY id").fetchall()


def test_a_line_nested_5000_deep_is_quarantined_and_the_lines_after_it_are_stored(project):
    data = lines(decision("A1"), DEEP, decision("A2"), review("A2"))
    output, _ = ingest(project, "deep.jsonl", data)
    assert "nested deeper than ingest.max_depth (100)" in output
    assert [r[:2] for r in quarantine(project)] == [(2, "nested deeper than ingest.max_depth (100)")]
    assert [s.session_id for s in Workspace(project).sessions] == ["A2"]
    again = accounted(project, data)  # a rerun goes past the line too
    assert (again.duplicates, again.quarantined) == (3, 1)


def test_depth_and_line_size_limits_are_settings(project):
    (project / "improver.yaml").write_text("target:\n  callable: agent:decide\n  config: config\n"
                                           "ingest:\n  max_line_bytes: 400\n  max_depth: 3\n")
    long = decision("L1") | {"reasoning": "x" * 1000}
    nested = decision("N1") | {"case": {"a": {"b": {"c": 1}}}}
    fine = decision("F1") | {"case": {"a": {"b": 1}}}
    report = accounted(project, lines(long, nested, fine))
    assert (report.decisions_new, report.quarantined) == (1, 2)
    reasons = [r[1] for r in quarantine(project)]
    assert reasons[0] == f"line too long: {len(json.dumps(long)) + 1} bytes, over ingest.max_line_bytes (400)"
    assert reasons[1] == "nested deeper than ingest.max_depth (3)"


def test_brackets_inside_strings_do_not_count_as_nesting(project):
    report = accounted(project, lines(decision("S1") | {"reasoning": "[" * 500 + "{" * 500}))
    assert (report.decisions_new, report.quarantined) == (1, 0)


def test_a_utf8_byte_order_mark_is_accepted_and_the_first_review_is_kept(project):
    output, store = ingest(project, "bom.jsonl", b"\xef\xbb\xbf" + lines(review("B1"), decision("B1")))
    assert "0 quarantined" in output
    assert [s.session_id for s in Workspace(project).sessions] == ["B1"]
    assert Workspace(project).store().count_orphan_reviews() == 0


def test_ids_that_are_not_utf8_never_collide_they_are_quarantined_with_the_byte(project):
    data = lines(json.dumps(decision("NU-X")).encode().replace(b"X", b"\xff"),
                 json.dumps(decision("NU-X")).encode().replace(b"X", b"\xfe"), decision("OK"))
    report = accounted(project, data)
    assert (report.decisions_new, report.duplicates, report.quarantined) == (1, 0, 2)
    (_, first, raw1), (_, second, raw2) = quarantine(project)
    assert first.startswith("not UTF-8: byte 0xff at offset") and second.startswith("not UTF-8: byte 0xfe")
    assert "NU-\\xff" in raw1 and "NU-\\xfe" in raw2  # the quarantine keeps the bytes distinct


def test_blank_ids_and_decisions_are_quarantined_with_the_field_named(project):
    report = accounted(project, lines(decision("   "), review("  "), review("C1", choice="  "), decision("C1"),
                                      decision("C2", choice="")))
    assert (report.decisions_new, report.reviews_new, report.quarantined) == (1, 0, 4)
    reasons = [r[1] for r in quarantine(project)]
    assert [r.split(":")[1].strip() for r in reasons] == ["session_id", "session_id", "decision", "decision"]
    assert all("must not be empty or only whitespace" in r for r in reasons), reasons


def test_a_conflicting_decision_is_kept_in_history_reported_and_the_latest_ts_is_used(project):
    ingest(project, "first.jsonl", lines(decision("K1", "approve"), review("K1", "reject"), decision("K2")))
    output, _ = ingest(project, "second.jsonl", lines(decision("K1", "reject"), decision("K2")))
    output = " ".join(output.split())
    assert "1 conflicting decisions" in output and "(K1)" in output and "the one with the latest ts is used" in output
    with TraceStore(project / ".improver" / "traces.sqlite") as store:
        assert [d["decision"] for d in store.decision_history("K1")] == ["approve", "reject"]
    assert Workspace(project).sessions[0].agent_decision == "approve"  # same ts: the first stored stays

    newer = accounted(project, lines(decision("K1", "escalate", ts="2026-03-01T00:00:00Z"), decision("K1", "reject")))
    assert (newer.conflicting_decisions, newer.conflicting_sessions, newer.duplicates) == (1, ["K1"], 1)
    assert Workspace(project).sessions[0].agent_decision == "escalate"
    with TraceStore(project / ".improver" / "traces.sqlite") as store:
        assert [d["decision"] for d in store.decision_history("K1")] == ["approve", "reject", "escalate"]
    rerun = accounted(project, lines(decision("K1", "approve"), decision("K1", "reject")))  # versions already kept
    assert (rerun.conflicting_decisions, rerun.duplicates) == (0, 2)


def test_conflicting_decisions_in_one_file_are_reported_too(project):
    report = accounted(project, lines(decision("K1", "approve"), decision("K1", "reject"), decision("K1", "approve")))
    assert (report.decisions_new, report.conflicting_decisions, report.duplicates) == (1, 1, 1)


def test_binary_input_fails_with_what_was_expected_and_found_and_stores_nothing(project):
    path = write(project, "traces.jsonl", bytes(range(256)) * 200)
    done = subprocess.run([sys.executable, "-c", "from improver.cli.app import main; main()", "ingest", str(path),
                           "--project", str(project)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert "is not a trace file: expected trace rows: JSON lines" in message and "found binary data" in message
    assert not (project / ".improver" / "traces.sqlite").exists() or TraceStore(
        project / ".improver" / "traces.sqlite").counts()["quarantined"] == 0


def test_text_that_is_not_json_fails_naming_how_it_starts(project):
    path = write(project, "notes.txt", b"Meeting notes\nnothing to ingest here\n")
    result = CliRunner().invoke(app, ["ingest", str(path), "--project", str(project)])
    assert "is not a trace file: expected trace rows" in str(result.exception)
    assert "found no row that parses in its first lines (line 1: invalid JSON" in str(result.exception)
    assert "it starts 'Meeting notes" in str(result.exception)
    assert not (project / ".improver" / "traces.sqlite").exists()


def test_csv_and_json_document_rows_that_are_not_utf8_are_quarantined_not_merged(tmp_path):
    from improver.sources.rows import read_rows

    csv_file = write(tmp_path, "spans.csv", b"span_id,name\nS-\xff,agent\nS-\xfe,agent\nS-1,agent\n")
    rows = [row for _, row in read_rows(csv_file)]
    assert [r.reason.split(";")[0] for r in rows[:2]] == ["not UTF-8", "not UTF-8"]
    assert "S-\\xff" in rows[0].raw and "S-\\xfe" in rows[1].raw and rows[2] == {"span_id": "S-1", "name": "agent"}
    document = write(tmp_path, "spans.json", b'[\n {"span_id": "S-\xff"},\n {"span_id": "S-1"}\n]\n')
    rows = [row for _, row in read_rows(document)]
    assert rows[0].reason.startswith("not UTF-8") and rows[1] == {"span_id": "S-1"}


def test_a_deep_json_string_inside_a_span_is_quarantined_not_a_crash(project):
    from procurement.tracing import export_rows

    rows = list(export_rows(n=6))
    agent_span = next(r for r in rows if "attributes.output.value" in r)
    agent_span["attributes.output.value"] = "[" * 5000 + "]" * 5000
    report = Workspace(project).ingest(str(write(project, "spans.jsonl", lines(*rows))))
    assert (report.decisions_new, report.quarantined, report.unaccounted) == (5, 1, 0)


def mcp_ingest(project: Path, source: str):
    async def main():
        async with Client(build_server(project)) as client:
            return await client.call_tool("ingest_traces", {"source": source})
    return anyio.run(main)


def test_mcp_ingest_errors_carry_the_reason_and_results_the_accounting(project):
    write(project, "binary.jsonl", bytes(range(256)) * 10)
    failed = mcp_ingest(project, "binary.jsonl")
    assert failed.is_error and "is not a trace file" in failed.content[0].text and "found binary data" in failed.content[0].text

    write(project, "deep.jsonl", lines(decision("A1"), DEEP, decision("A1", "reject"), review("A1")))
    result = mcp_ingest(project, "deep.jsonl")
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    assert data["quarantine_reasons"] == {"nested deeper than ingest.max_depth (100)": 1}
    assert (data["rows_read"], data["stored"], data["duplicates"], data["quarantined"]) == (4, 3, 0, 1)
    assert (data["conflicting_decisions"], data["conflicting_sessions"]) == (1, ["A1"])


def test_mcp_names_an_unexpected_failure_instead_of_a_bare_error(project, monkeypatch):
    def broken(self, spec):
        raise KeyError("boom")
    monkeypatch.setattr(Workspace, "ingest", broken)
    write(project, "t.jsonl", lines(decision("A1")))
    result = mcp_ingest(project, "t.jsonl")
    assert result.is_error and "unexpected KeyError" in result.content[0].text
