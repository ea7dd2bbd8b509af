"""The Claude mining agent end to end: the real Claude Agent SDK and its bundled CLI,
against a scripted Anthropic-compatible API on loopback, calling improver's MCP tools."""
from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from improver.cli import app
from improver.demo import make_demo_project
from improver.errors import ImproverError
from improver.mining_agent import NO_CREDENTIALS, check_credentials, mine_with_claude
from improver.workspace import Workspace
from scripted_anthropic import ScriptedAnthropic, api_error, text, tool_use

pytest.importorskip("claude_agent_sdk")
TOOL = "mcp__improver__{}".format


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    project = make_demo_project(tmp_path / "demo", n=60)
    ws = Workspace(project)
    ws.ingest(str(project / "traces.jsonl"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "dummy")
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "0")
    return ws


def serve(monkeypatch, turns) -> ScriptedAnthropic:
    api = ScriptedAnthropic(turns)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    return api


def test_agent_calls_improver_tools_and_its_report_lands_in_a_new_experiment(workspace, monkeypatch):
    base = workspace.baseline()
    first, second, *_ = [p.name for p in workspace.mine(base).proposable]
    refinements = [{"id": first, "name": "one-campaign-panic-buy", "reason": "Reviewers reject one-campaign tools."},
                   {"id": second, "out_of_scope": True, "why": "a staffing judgement, not a rule"}]
    report = "# What the reviewers keep telling the agent\n\nPanic buys for one campaign get rejected (PR-009, PR-030, PR-046)."
    turns = [
        [text("Let me look at the graph."), tool_use(TOOL("graph_summary"), {})],
        [tool_use(TOOL("explain_precedent"), {"name": first})],
        [tool_use(TOOL("submit_mining_report"), {"report": report, "refinements": [{"id": "no-such-rule"}]})],
        [tool_use(TOOL("submit_mining_report"), {"report": report, "refinements": refinements,
                                                 "guidance": ["Quote the policy you apply."]})],
        [text("Submitted the report.")],
    ]
    with serve(monkeypatch, turns) as api:
        outcome = mine_with_claude(workspace, base, max_turns=10, max_budget_usd=1.0, timeout=180)

    summary, explained, refused, accepted = (r["content"] for r in api.tool_results())
    assert json.loads(summary.split("\n\n<system-reminder>")[0])["sessions"] == 60  # the tool really ran
    assert "evidence" in explained and "no built-in proposal 'no-such-rule'" in refused
    assert "recorded" in accepted
    assert {t["name"] for t in api.requests[0]["tools"]} >= {TOOL("graph_summary"), TOOL("submit_mining_report")}

    experiment = outcome.experiment
    manifest = experiment.manifest
    assert manifest.kind == "agent" and manifest.parent == base.id
    assert manifest.mining["derived_from"] == outcome.built_in.id
    ids = [p.id for p in manifest.proposals]
    assert "one-campaign-panic-buy" in ids and first not in ids and second not in ids
    assert manifest.guidance == ["Quote the policy you apply."]
    assert manifest.agent["turns"] >= 4 and manifest.agent["tool_calls"] == 4
    assert manifest.agent["input_tokens"] > 0 and manifest.agent["output_tokens"] > 0
    assert manifest.agent["cost_usd"] is not None and manifest.agent["refined_from"] == outcome.built_in.id
    on_disk = yaml.safe_load((experiment.path / "manifest.yaml").read_text())
    assert on_disk["agent"]["turns"] == manifest.agent["turns"]
    written = (experiment.path / "report.md").read_text()
    assert written.startswith(report) and f"{second}: out of scope (a staffing judgement" in written
    assert "one-campaign-panic-buy" in (experiment.path / "patch.diff").read_text()
    assert [p.id for p in outcome.built_in.manifest.proposals][:2] == [first, second]


def test_a_scripted_api_error_ends_in_a_clear_failure(workspace, monkeypatch):
    base = workspace.baseline()
    with serve(monkeypatch, [api_error(529, "overloaded_error", "Overloaded")]):
        with pytest.raises(ImproverError, match=r"ended without submitting its report.*529"):
            mine_with_claude(workspace, base, timeout=120)


def test_the_turn_budget_stops_the_session(workspace, monkeypatch):
    base = workspace.baseline()
    loop = [[tool_use(TOOL("graph_summary"), {})] for _ in range(5)]
    with serve(monkeypatch, loop) as api:
        with pytest.raises(ImproverError, match="maximum number of turns"):
            mine_with_claude(workspace, base, max_turns=2, timeout=120)
    assert len(api.requests) == 2


def test_without_credentials_the_agent_fails_at_once_saying_how_to_log_in(tmp_path, monkeypatch):
    project = make_demo_project(tmp_path / "demo", n=20)
    for key in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK",
                "CLAUDE_CODE_USE_VERTEX"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["mine", "--agent", "claude", "--project", str(project)])
    assert isinstance(result.exception, ImproverError) and str(result.exception) == NO_CREDENTIALS
    assert "ANTHROPIC_API_KEY" in NO_CREDENTIALS and "/login" in NO_CREDENTIALS
    assert not (project / "experiments").exists()


def test_a_claude_code_login_counts_as_credentials(tmp_path):
    with pytest.raises(ImproverError):
        check_credentials({}, home=tmp_path)
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude" / ".credentials.json").write_text("{}")
    check_credentials({}, home=tmp_path)
    check_credentials({"ANTHROPIC_API_KEY": "sk-..."}, home=tmp_path / "nowhere")


def test_mine_agent_claude_on_the_command_line(workspace, monkeypatch):
    turns = [[tool_use(TOOL("submit_mining_report"), {"report": "# Report\n\nNothing to change."})], [text("Done.")]]
    with serve(monkeypatch, turns):
        result = CliRunner().invoke(app, ["mine", "--agent", "claude", "--max-turns", "5",
                                          "--project", str(workspace.project.root)])
    assert result.exit_code == 0, result.output
    assert "Claude mining agent (claude-sonnet-4-5): 2 turns, 1 tool calls" in result.output
    assert "refined from 0002-cycle-1" in result.output and "Held-out agreement: refined" in result.output
    agent = workspace.experiments.get("0003-cycle-1-agent")
    assert agent.results is not None and agent.manifest.agent["stop"] == "success"
