"""`improver check`: the CI gate passes the accepted config and fails a worse one, with JUnit and Markdown."""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from typer.testing import CliRunner

from improver import review as reviewing
from improver.cli import app
from improver.cycle import run_cycles
from improver.demo import make_demo_project
from improver.workspace import Workspace


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory) -> tuple[Path, str]:
    """A demo project after one cycle whose best experiment was accepted in review (not yet merged)."""
    folder = make_demo_project(tmp_path_factory.mktemp("check") / "p", n=60)
    ws = Workspace(folder)
    ws.ingest(str(folder / "traces.jsonl"))
    best = run_cycles(ws, max_cycles=1)["parent"]
    outcome = reviewing.review(ws, best, [p.id for p in ws.experiments.get(best).manifest.proposals], [])
    return folder, outcome.shipped


@pytest.fixture
def project(reviewed, tmp_path) -> tuple[Path, str]:
    """A copy of the reviewed project whose config is the accepted experiment's (the PR merged)."""
    folder, accepted = reviewed
    copy = tmp_path / "p"
    shutil.copytree(folder, copy)
    shutil.rmtree(copy / "config")
    shutil.copytree(copy / "experiments" / accepted / "config", copy / "config")
    return copy, accepted


def run_check(folder: Path, *options: str):
    junit, summary = folder / "junit.xml", folder / "summary.md"
    result = CliRunner().invoke(app, ["check", "--project", str(folder), "--junit", str(junit), "--summary",
                                      str(summary), *options])
    return result, ElementTree.parse(junit).getroot(), summary.read_text(encoding="utf-8")


def test_check_passes_the_accepted_config(project):
    folder, accepted = project
    result, junit, summary = run_check(folder)
    assert result.exit_code == 0, result.output
    assert "improver check passed" in result.output and f"accepted {accepted}" in result.output
    assert "0 sessions regressed" in result.output
    assert [s.get("failures") for s in junit] == ["0", "0"]
    assert summary.startswith("## ✅ improver check passed") and f"`{accepted}`" in summary


def test_check_fails_a_worsened_config_and_lists_the_sessions_that_regressed(project):
    folder, accepted = project
    policy = folder / "config" / "policy.yaml"
    policy.write_text(policy.read_text().replace("manager_approval_up_to: 50000", "manager_approval_up_to: 1000"))
    ws = Workspace(folder)
    outcome = ws.check()
    assert not outcome.passed and outcome.current < outcome.accepted and outcome.regressions

    result, junit, summary = run_check(folder)
    assert result.exit_code == 1, result.output
    assert "improver check FAILED" in result.output
    regressed = [r["session_id"] for r in outcome.regressions]
    assert all(f"regressed {sid} " in result.output for sid in regressed[:50])
    gate, sessions = junit
    assert gate.get("failures") == "1" and gate.find("testcase/failure") is not None
    assert sessions.get("failures") == str(len(regressed))
    assert [c.get("name") for c in sessions] == [f"session {sid}" for sid in regressed]
    assert summary.startswith("## ❌ improver check failed") and "### Sessions that regressed" in summary
    assert all(f"| `{sid}` |" in summary for sid in regressed[:50])


def test_check_fails_the_config_before_the_merge_unless_the_margin_allows_the_drop(reviewed, tmp_path):
    folder, accepted = reviewed  # its config is still the unimproved baseline's
    shutil.copytree(folder, tmp_path / "p")
    result, junit, _ = run_check(tmp_path / "p")
    assert result.exit_code == 1 and "FAILED" in result.output

    result, junit, summary = run_check(tmp_path / "p", "--margin", "1.0")
    assert result.exit_code == 0, result.output
    gate, sessions = junit
    assert gate.get("failures") == "0" and sessions.get("skipped") == sessions.get("tests") != "0"
    assert "✅" in summary and "### Sessions that regressed" in summary


def test_check_without_an_accepted_experiment_says_how_to_accept_one(tmp_path):
    folder = make_demo_project(tmp_path / "p", n=30)
    ws = Workspace(folder)
    ws.ingest(str(folder / "traces.jsonl"))
    ws.baseline()
    result = CliRunner().invoke(app, ["check", "--project", str(folder)])
    assert result.exit_code != 0 and "improver review" in str(result.exception)
