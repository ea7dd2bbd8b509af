"""The ready GitHub Actions workflows in examples/github-actions/ parse and call real commands and options."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import typer
import yaml

from improver.cli import app

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
