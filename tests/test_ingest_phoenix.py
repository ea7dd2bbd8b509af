"""A real Phoenix server on loopback: the traced example in, improver's ingest and a cycle out.

The server is the shared ``phoenix`` fixture (tests/phoenix_server.py, registered in conftest.py).
"""
from __future__ import annotations

import time

import httpx
from typer.testing import CliRunner

from improver.cli import app
from improver.cycle import run_cycles
from improver.demo import make_demo_project
from improver.workspace import Workspace
from procurement.tracing import trace_to_phoenix

PROJECT = "procurement"


def stored_spans(url: str, name: str) -> int:
    spans, cursor = 0, None
    while True:
        params = {"name": name, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        response = httpx.get(f"{url}/v1/projects/{PROJECT}/spans", params=params, timeout=10)
        if response.status_code == 404:
            return 0
        page = response.json()
        spans += len(page["data"])
        cursor = page.get("next_cursor")
        if not cursor:
            return spans


def wait_for_spans(url: str, name: str, count: int, timeout: float = 120) -> None:
    """Phoenix stores spans asynchronously: wait until it holds ``count`` of them."""
    deadline = time.monotonic() + timeout
    while stored_spans(url, name) < count:
        assert time.monotonic() < deadline, f"Phoenix stored only {stored_spans(url, name)} of {count} {name} spans"
        time.sleep(0.5)


def test_traced_example_ingests_from_phoenix_incrementally_and_runs_a_cycle(phoenix, tmp_path):
    project = make_demo_project(tmp_path / "p", n=30)  # the same 30 sessions as native traces, to compare
    expected = Workspace(make_demo_project(tmp_path / "native", n=30))
    expected.ingest(str(tmp_path / "native" / "traces.jsonl"))
    source = f"phoenix+{phoenix}/{PROJECT}"

    first = trace_to_phoenix(phoenix, PROJECT, n=30, last=20)
    wait_for_spans(phoenix, "process.run", 20)
    ws = Workspace(project)
    report = ws.ingest(source)
    assert (report.decisions_new, report.reviews_new, report.quarantined) == (20, 20, 0)
    assert sorted(s.session_id for s in ws.sessions) == sorted(first)

    trace_to_phoenix(phoenix, PROJECT, n=30, first=20)
    wait_for_spans(phoenix, "process.run", 30)
    report = ws.ingest(source)
    assert (report.events, report.decisions_new, report.reviews_new, report.duplicates) == (20, 10, 10, 0)
    pulled = CliRunner().invoke(app, ["ingest", "--from", source, "--project", str(project)])
    assert pulled.exit_code == 0 and f"{source}: 0 events" in pulled.output  # nothing new since the last pull

    humans = {s.session_id: (s.human_decision, s.human_reasoning, s.precedent, s.conditions, s.case, s.agent_decision)
              for s in expected.sessions}
    assert {s.session_id: (s.human_decision, s.human_reasoning, s.precedent, s.conditions, s.case, s.agent_decision)
            for s in ws.sessions} == humans

    state = run_cycles(ws, max_cycles=1)
    assert state["history"] and state["history"][0]["experiment"]
    baseline = ws.experiments.get(state["history"][0]["experiment"]).results
    assert baseline["all"]["sessions"] == 30
