"""Every MCP tool through the real in-memory MCP client, in both protocol modes
(the legacy initialize handshake and the 2026 per-request protocol)."""
from __future__ import annotations

import json

import anyio
import pytest
from mcp import Client

from improver.demo import make_demo_project
from improver.mcp import TOOL_NAMES, build_server

MODES = ("legacy", "auto")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_demo_project(tmp_path_factory.mktemp("mcp") / "demo", n=60)


def call(project, mode: str, *steps):
    """Run (tool, arguments) steps in one client session; returns the results and progress seen."""
    progress: list[tuple] = []

    async def record(done, total, message):
        progress.append((done, total, message))

    async def main():
        results = []
        async with Client(build_server(project), mode=mode) as client:
            for name, arguments in steps:
                results.append(await client.call_tool(name, arguments, progress_callback=record))
        return results
    return anyio.run(main), progress


def ok(result) -> dict:
    assert not result.is_error, result.content[0].text
    assert result.structured_content is not None
    return result.structured_content


def error_text(result) -> str:
    assert result.is_error
    return result.content[0].text


@pytest.mark.parametrize("mode", MODES)
def test_tools_are_listed_with_output_schemas_and_hints(project, mode):
    async def main():
        async with Client(build_server(project), mode=mode) as client:
            return (await client.list_tools()).tools
    tools = {t.name: t for t in anyio.run(main)}
    assert set(tools) == set(TOOL_NAMES)
    for tool in tools.values():
        assert tool.description and tool.output_schema, tool.name
        assert tool.annotations.destructive_hint is False
    read_only = {n for n, t in tools.items() if t.annotations.read_only_hint}
    assert read_only == {"graph_summary", "get_session", "list_disagreements", "list_experiments"}


@pytest.mark.parametrize("mode", MODES)
def test_the_whole_loop_runs_through_the_tools(project, mode):
    (ingest, summary, session, disagreements, clusters, explained, proposed, listed), _ = call(
        project, mode, ("ingest_traces", {"source": "traces.jsonl"}), ("graph_summary", {}),
        ("get_session", {"session_id": "PR-001"}),
        ("list_disagreements", {"decision_pair": "approve->reject", "split": "all"}),
        ("cluster_precedents", {}), ("explain_precedent", {"name": "marketing-panic-buy"}),
        ("propose_experiment", {}), ("list_experiments", {}))
    assert ok(ingest)["reviewed_sessions"] == 60
    summary = ok(summary)
    assert summary["sessions"] == 60 and summary["train_sessions"] + summary["heldout_sessions"] == 60
    assert summary["nodes"]["Session"] == 60 and summary["edges"]["OVERRIDES"] == summary["disagreements"]

    session = ok(session)
    assert session["agent"]["reasoning"] and session["review"]["reasoning"]
    assert session["entities"]["vendor"] == session["case"]["vendor"] and "amount" in session["bands"]
    assert {"DECIDED", "REVIEWED", "INVOLVES"} <= {e["type"] for e in session["edges"]}

    rows = ok(disagreements)
    assert rows["total"] >= 1 and set(rows["by_pair"]) == {"approve -> reject"}
    assert all(r["agent_decision"] == "approve" and r["human_decision"] == "reject" for r in rows["sessions"])

    clusters = ok(clusters)
    assert clusters["parent"].endswith("-baseline") and clusters["precedents"]
    explained = ok(explained)
    assert explained["proposable"] and len(explained["evidence"]) >= 3
    assert all(e["reasoning"] for e in explained["evidence"])

    proposed = ok(proposed)
    assert proposed["created"] == (mode == MODES[0]) and proposed["experiment"]["proposals"]  # then it exists
    assert proposed["experiment"]["patch"].startswith("diff --git")
    assert (project / proposed["experiment"]["path"] / "manifest.yaml").exists()
    assert proposed["experiment"]["id"] in {e["id"] for e in ok(listed)["experiments"]}


@pytest.mark.parametrize("mode", MODES)
def test_run_score_and_compare_report_progress_and_scores(project, mode):
    (proposed, before), _ = call(project, mode, ("propose_experiment", {}), ("list_experiments", {}))
    new = ok(proposed)["experiment"]["id"]
    fresh = next(e for e in ok(before)["experiments"] if e["id"] == new)["train"] is None  # not run and scored yet
    (run, score, compared, listed), progress = call(
        project, mode, ("run_experiment", {"experiment_id": new}), ("score_experiment", {"experiment_id": new}),
        ("compare_experiments", {"a": ok(proposed)["experiment"]["parent"], "b": new}), ("list_experiments", {}))
    assert ok(run)["decisions"] == 60
    assert not fresh or any(message == f"run {new}" and done == total == 60 for done, total, message in progress)
    score = ok(score)
    assert score["train"]["sessions"] > 0 and score["change"] is not None and score["per_proposal"]
    compared = ok(compared)
    assert compared["agreement"]["heldout"]["b"] == score["heldout"]["agreement"]
    assert compared["changed_sessions"] and compared["proposals_only_in_b"]
    row = next(e for e in ok(listed)["experiments"] if e["id"] == new)
    assert row["heldout"] == score["heldout"]["agreement"]


def test_proposing_again_from_the_same_parent_returns_the_same_experiment(project):
    (first, second, listed), _ = call(project, "auto", ("propose_experiment", {}), ("propose_experiment", {}),
                                      ("list_experiments", {}))
    assert ok(second)["created"] is False and ok(second)["experiment"]["id"] == ok(first)["experiment"]["id"]
    parents = [e["parent"] for e in ok(listed)["experiments"] if e["kind"] == "cycle"]
    assert len(parents) == len(set(parents))  # one cycle experiment per parent, however often it was asked


@pytest.mark.parametrize("mode", MODES)
def test_bad_arguments_come_back_as_errors_that_say_what_to_fix(project, mode):
    results, _ = call(
        project, mode, ("get_session", {"session_id": "PR-01"}), ("run_experiment", {"experiment_id": "../../etc"}),
        ("score_experiment", {"experiment_id": "9999-nope"}), ("ingest_traces", {"source": "../outside.jsonl"}),
        ("ingest_traces", {"source": "/etc/passwd"}), ("list_disagreements", {"decision_pair": "approve"}),
        ("list_disagreements", {"entity": "colour=red"}), ("explain_precedent", {"name": "no-such-precedent"}),
        ("list_disagreements", {"limit": 0}))
    session, bad_id, missing, outside, absolute, pair, field, precedent, limit = map(error_text, results)
    assert "did you mean PR-" in session
    assert "invalid experiment id" in bad_id and "ids look like" in bad_id
    assert "no experiment '9999-nope'" in missing
    assert "outside the project folder" in outside and "outside the project folder" in absolute
    assert "approve->reject" in pair
    assert "not an entity field" in field and "vendor" in field
    assert "its precedents are" in precedent
    assert "limit" in limit
    assert not (project.parent / "outside.jsonl").exists() and not (project / "experiments" / "9999-nope").exists()


@pytest.mark.parametrize("mode", MODES)
def test_experiment_files_are_resources(project, mode):
    async def main():
        async with Client(build_server(project), mode=mode) as client:
            templates = (await client.list_resource_templates()).resource_templates
            manifest = await client.read_resource("improver://experiments/0001-baseline/manifest")
            results = await client.read_resource("improver://experiments/0001-baseline/results")
            with pytest.raises(Exception, match="Unknown resource"):
                await client.read_resource("improver://experiments/..%2Fsecret/report")
            with pytest.raises(Exception, match="invalid experiment id"):
                await client.read_resource("improver://experiments/Not-An-Id/report")
            return templates, manifest, results
    templates, manifest, results = anyio.run(main)
    assert {t.uri_template.rsplit("/", 1)[1] for t in templates} == {"manifest", "report", "results", "patch"}
    assert "kind: baseline" in manifest.contents[0].text
    assert json.loads(results.contents[0].text)["experiment"] == "0001-baseline"
