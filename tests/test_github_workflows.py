"""The ready GitHub Actions workflows in examples/github-actions/ parse and call real commands and options."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from improver.cli import app
from improver.cycle import run_cycles
from improver.demo import make_demo_project
from improver.workspace import Workspace

FOLDER = Path(__file__).resolve().parent.parent / "examples" / "github-actions"


def improver_calls(workflow: dict) -> list[list[str]]:
    calls = []
    for step in workflow["jobs"][next(iter(workflow["jobs"]))]["steps"]:
        for line in step.get("run", "").splitlines():
            for match in re.finditer(r"(?:^|\$\()\s*(improver [^|;#]+)", line.strip()):
                calls.append(shlex.split(match.group(1).replace('"$GITHUB_STEP_SUMMARY"', "summary.md")))
    return calls


def test_workflows_gate_prs_on_check_and_open_prs_from_scheduled_cycles():
    check = yaml.safe_load((FOLDER / "improver-check.yml").read_text())
    cycle = yaml.safe_load((FOLDER / "improver-cycle.yml").read_text())
    assert "config/**" in check[True]["pull_request"]["paths"]  # YAML 1.1 reads the key `on` as True
    assert "schedule" in cycle[True] and cycle["permissions"]["pull-requests"] == "write"
    commands = typer.main.get_command(app).commands
    calls = improver_calls(check) + improver_calls(cycle)
    assert {c[1] for c in improver_calls(check)} >= {"ingest", "check"}
    assert {c[1] for c in improver_calls(cycle)} >= {"ingest", "cycle", "log", "report", "pr"}
    for call in calls:
        command = commands[call[1]]
        known = {opt for param in command.params for opt in param.opts}
        assert [a for a in call[2:] if a.startswith("--") and a not in known] == [], call


def test_scheduled_workflow_picks_the_experiment_that_raised_cross_validated_agreement(tmp_path):
    cycle = yaml.safe_load((FOLDER / "improver-cycle.yml").read_text())
    script = next(s["run"] for s in cycle["jobs"]["cycle"]["steps"] if "improver pr" in s.get("run", ""))
    picker = textwrap.dedent(script.split("python -c '", 1)[1].split("')", 1)[0])
    folder = make_demo_project(tmp_path / "p", n=60)
    ws = Workspace(folder)
    ws.ingest(str(folder / "traces.jsonl"))
    best = run_cycles(ws, max_cycles=1)["parent"]
    log = CliRunner().invoke(app, ["log", "--json", "--project", str(folder)])
    assert log.exit_code == 0, log.output
    picked = subprocess.run([sys.executable, "-c", picker], input=log.output, capture_output=True, text=True)
    assert picked.returncode == 0, picked.stderr
    assert picked.stdout.strip() == best != ws.experiments.ids()[0]
