"""The README's second example: a command target learns a tagged and an untagged precedent."""
import os
import shutil
import sys
from pathlib import Path

from improver.cycle import run_cycles
from improver.runtime import load_overlay
from improver.workspace import Workspace

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "support_triage"


def test_support_triage_learns_the_sso_precedent_and_the_enterprise_rule(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # `python` = this venv
    project = tmp_path / "support"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("experiments", ".improver"))
    ws = Workspace(project)
    ws.ingest(str(project / "traces.jsonl"))
    state = run_cycles(ws, max_cycles=3)
    overlay = load_overlay(ws.experiments.get(state["parent"]).config_dir)
    conditions = sorted(str(rule.when) for rule in overlay.rules)
    assert conditions == [str({"plan": {"eq": "enterprise"}}), str({"product": {"eq": "login"}})]
    first, last = state["history"][0], state["history"][-1]
    assert last["cv"] == 1.0 > first["cv"]  # every ticket scored by rules mined without it
    assert last["train"] == 1.0 and last["heldout"] is None  # no locked test split in this example
