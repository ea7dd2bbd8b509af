"""`improver push phoenix+http://...`: an experiment lands in a live Phoenix as a dataset and an experiment run.

Uses the shared ``phoenix`` fixture (tests/phoenix_server.py) and finds what was pushed
through Phoenix's own REST API.
"""
from __future__ import annotations

import httpx
import yaml
from typer.testing import CliRunner

from improver.cli import app
from improver.cycle import run_cycles
from improver.demo import make_demo_project
from improver.leakscan import LeakError
from improver.workspace import Workspace


def get(url: str, path: str):
    response = httpx.get(f"{url}{path}", timeout=30)
    response.raise_for_status()
    return response.json()["data"]


def test_push_puts_reviewed_sessions_and_the_experiments_decisions_in_phoenix(phoenix, tmp_path):
    folder = make_demo_project(tmp_path / "p", n=30)
    ws = Workspace(folder)
    ws.ingest(str(folder / "traces.jsonl"))
    best = run_cycles(ws, max_cycles=1)["parent"]
    results = ws.experiments.get(best).results
    humans = {s.session_id: s.human_decision for s in ws.sessions}
    agent = {k: v["decision"] for k, v in ws.run(ws.experiments.get(best)).items()}

    pushed = CliRunner().invoke(app, ["push", f"phoenix+{phoenix}", best, "--project", str(folder)])
    assert pushed.exit_code == 0, pushed.output
    assert f"Pushed {best} to Phoenix" in pushed.output

    dataset = next(d for d in get(phoenix, "/v1/datasets") if d["name"] == f"improver p {best}")
    examples = get(phoenix, f"/v1/datasets/{dataset['id']}/examples")["examples"]
    assert {e["input"]["session_id"]: e["output"]["decision"] for e in examples} == humans

    experiments = get(phoenix, f"/v1/datasets/{dataset['id']}/experiments")
    assert len(experiments) == 1 and experiments[0]["metadata"]["improver_experiment"] == best
    runs = httpx.get(f"{phoenix}/v1/experiments/{experiments[0]['id']}/json", timeout=30).json()
    assert len(runs) == len(humans)
    by_session = {run["input"]["session_id"]: run for run in runs}
    assert {sid: run["output"]["decision"] for sid, run in by_session.items()} == agent
    scores = [a["score"] for run in runs for a in run["annotations"] if a["name"] == "agreement"]
    assert len(scores) == len(humans) and sum(scores) == results["all"]["agree"]

    again = CliRunner().invoke(app, ["push", f"phoenix+{phoenix}", best, "--project", str(folder)])
    assert again.exit_code == 2 or "already has a dataset" in str(again.exception)


def test_push_refuses_sessions_that_hold_a_name_redaction_now_masks_and_sends_nothing(tmp_path):
    """A name added to redaction.names after ingest is in the stored cases: nothing goes to Phoenix."""
    folder = make_demo_project(tmp_path / "p", n=30)
    ws = Workspace(folder)
    ws.ingest(str(folder / "traces.jsonl"))
    best = run_cycles(ws, max_cycles=1)["parent"]
    config = yaml.safe_load((folder / "improver.yaml").read_text())
    config["redaction"] = {"names": ["DataStream Analytics"]}
    (folder / "improver.yaml").write_text(yaml.safe_dump(config))
    pushed = CliRunner().invoke(app, ["push", "phoenix+http://127.0.0.1:9/nowhere", best, "--project", str(folder)])
    assert isinstance(pushed.exception, LeakError) and "the Phoenix dataset" in str(pushed.exception)
