"""A new user's first run: `improver init` (with --traces), --json on the loop commands, and the
notices that explain an agent raising on cases or ignoring the learned rules."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from improver.cli import app

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "examples" / "support_triage" / "traces.jsonl"


@pytest.fixture(autouse=True)
def fresh_agent_module():
    """Each test's project has its own my_agent.py; forget the one imported before."""
    sys.modules.pop("my_agent", None)
    yield
    sys.modules.pop("my_agent", None)


def cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_init_proposes_fields_bands_and_labels_from_the_traces(tmp_path):
    result = cli("init", str(tmp_path), "--traces", str(TRACES), "--json")
    config = yaml.safe_load((tmp_path / "improver.yaml").read_text())
    assert config["entity_fields"] == ["product", "plan"]  # not the free-text field, not the ticket id
    assert list(config["bands"]) == ["waited_minutes"] and len(config["bands"]["waited_minutes"]) == 2
    assert set(config["decisions"]) == {"escalate", "resolve"}
    assert config["target"] == {"callable": "my_agent:decide", "python_path": ".", "config": "config"}
    assert (tmp_path / ".gitignore").read_text().splitlines() == [".improver/"]
    assert config["holdout"] == 0  # every review is cross-validated; a locked test split is opt-in
    assert json.loads(result.output)["from_traces"]["sessions"] == 120


def test_init_keeps_existing_files_and_never_replaces_improver_yaml(tmp_path):
    (tmp_path / ".gitignore").write_text("dist/\n")
    (tmp_path / "my_agent.py").write_text("# mine\n")
    cli("init", str(tmp_path), "--decisions", "approve,reject", "--entity-fields", "vendor", "--band", "amount=5000,50000")
    assert (tmp_path / "my_agent.py").read_text() == "# mine\n"
    assert (tmp_path / ".gitignore").read_text() == "dist/\n.improver/\n"
    assert yaml.safe_load((tmp_path / "improver.yaml").read_text())["bands"] == {"amount": [5000.0, 50000.0]}
    again = CliRunner().invoke(app, ["init", str(tmp_path)])
    assert again.exit_code != 0 and "exists already" in str(again.exception)


def test_the_stub_agent_reads_the_learned_rules_so_a_first_cycle_gains(tmp_path):
    cli("init", str(tmp_path), "--traces", str(TRACES))
    cli("ingest", str(TRACES), "--project", str(tmp_path), "--json")
    history = json.loads(cli("cycle", "--project", str(tmp_path), "--json", "--max-cycles", "1").output)["history"]
    assert history[-1]["cv"] > history[0]["cv"]  # out-of-fold: every review scored by rules mined without it


def test_an_agent_that_ignores_the_rules_and_raises_is_explained(tmp_path):
    cli("init", str(tmp_path), "--traces", str(TRACES))
    (tmp_path / "my_agent.py").write_text(
        "def decide(case, config_dir):\n"
        "    if case['product'] == 'billing' and case['plan'] == 'free':\n"
        "        raise ValueError('no billing data')\n"
        "    return {'decision': 'resolve'}\n")
    cli("ingest", str(TRACES), "--project", str(tmp_path))
    result = json.loads(cli("cycle", "--project", str(tmp_path), "--json").output)
    raised = [n for n in result["notices"] if " cases raised: ValueError: no billing data" in n]
    assert raised and raised[0].split(" of ")[1].startswith("120 cases")
    assert any(n.startswith("no decision changed from 0001-baseline: does your agent read the learned rules?")
               for n in result["notices"]), result["notices"]
    run = json.loads(cli("run", "0001-baseline", "--project", str(tmp_path), "--json").output)
    assert run["errors"] == int(raised[0].split(" of ")[0]) and run["error_examples"] == ["ValueError: no billing data"]


def test_a_cycle_on_unreviewed_traffic_points_to_the_review_queue(tmp_path):
    cli("init", str(tmp_path), "--traces", str(TRACES))
    decisions = [line for line in TRACES.read_text().splitlines() if json.loads(line)["type"] == "decision"]
    (tmp_path / "traffic.jsonl").write_text("\n".join(decisions) + "\n")
    cli("ingest", str(tmp_path / "traffic.jsonl"), "--project", str(tmp_path))
    result = CliRunner().invoke(app, ["cycle", "--project", str(tmp_path)])
    assert "no reviewed sessions yet" in str(result.exception)
    assert f"{len(decisions)} agent decisions are waiting for review: `improver queue`" in str(result.exception)


def test_quarantine_lists_each_bad_line_with_its_file_line_and_reason(tmp_path):
    cli("init", str(tmp_path), "--decisions", "resolve,escalate")
    lines = TRACES.read_text().splitlines()[:4]
    (tmp_path / "traces.jsonl").write_text("\n".join([lines[0], "{not json", lines[1], '{"type": "vote"}']) + "\n")
    assert "`improver quarantine` lists them" in cli("ingest", str(tmp_path / "traces.jsonl"), "--project", str(tmp_path)).output
    shown = cli("quarantine", "--project", str(tmp_path)).output.splitlines()
    assert [line.split(": ", 1)[0] for line in shown] == [f"{tmp_path / 'traces.jsonl'}:2", f"{tmp_path / 'traces.jsonl'}:4"]
    assert "type must be 'decision' or 'review'" in shown[1]
    listed = json.loads(cli("quarantine", "--project", str(tmp_path), "--json").output)
    assert listed["total"] == 2 and listed["lines"][0]["raw"].strip() == "{not json"


def test_an_installation_without_its_examples_or_skills_writes_nothing(tmp_path, monkeypatch):
    from improver.errors import ProjectError

    def missing(name):
        raise ProjectError(f"this installation of improver has no {name}/ folder")
    monkeypatch.setattr("improver.demo.bundled", missing)
    monkeypatch.setattr("improver.bundled.bundled", missing)
    demo = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
    assert demo.exit_code != 0 and "no examples/ folder" in str(demo.exception)
    installed = CliRunner().invoke(app, ["install-claude", "--project", str(tmp_path)])
    assert installed.exit_code != 0 and "no skills/ folder" in str(installed.exception)
    assert list(tmp_path.iterdir()) == []  # no stray demo folder, .mcp.json or empty skill folders


def test_the_demo_prints_its_ingest_cycles_and_best_scores_as_json(tmp_path):
    shown = json.loads(cli("demo", "--dir", str(tmp_path / "demo"), "--requests", "40", "--max-cycles", "1", "--json").output)
    assert shown["ingest"]["decisions_new"] == 40 and shown["stop_reason"]
    assert shown["best"]["cv"]["sessions"] == 40 and "agreement" in shown["best"]["train"]  # out-of-fold and in-sample
