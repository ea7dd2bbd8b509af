"""The MCP server as a new user meets it, through the real in-memory MCP client: started in a
folder with no project (tools say how to make one; init_project makes it), every parameter
described and every tool titled, experiments listed as resources, prompts, and the cycle and
review tools."""
from __future__ import annotations

from pathlib import Path

import anyio
from mcp import Client

from improver.demo import make_demo_project
from improver.mcp import build_server
from improver.workspace import Workspace

TRACES = Path(__file__).resolve().parent.parent / "examples" / "support_triage" / "traces.jsonl"


def test_a_server_without_a_project_says_how_to_make_one_and_makes_it(tmp_path):
    (tmp_path / "traces.jsonl").write_text(TRACES.read_text())

    async def main():
        async with Client(build_server(tmp_path)) as client:
            before = await client.call_tool("list_experiments", {})
            made = await client.call_tool("init_project", {"traces": "traces.jsonl"})
            outside = await client.call_tool("init_project", {"traces": "../elsewhere.jsonl"})
            ingested = await client.call_tool("ingest_traces", {"source": "traces.jsonl"})
            return before, made, outside, ingested
    before, made, outside, ingested = anyio.run(main)
    assert before.is_error and "init_project" in before.content[0].text
    assert made.structured_content["config"]["entity_fields"] == ["product", "plan"]
    assert outside.is_error and "outside the project folder" in outside.content[0].text
    assert not ingested.is_error and ingested.structured_content["reviewed_sessions"] == 120


def test_every_parameter_is_described_and_every_tool_titled(tmp_path):
    async def main():
        async with Client(build_server(tmp_path)) as client:
            return (await client.list_tools()).tools
    for tool in anyio.run(main):
        assert tool.title, tool.name
        for name, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{tool.name}.{name}"


def test_cycles_review_resources_and_prompts(tmp_path):
    project = make_demo_project(tmp_path / "demo", n=60)
    Workspace(project).ingest(str(project / "traces.jsonl"))

    async def main():
        async with Client(build_server(project)) as client:
            empty = (await client.list_resources()).resources
            cycled = await client.call_tool("run_cycle", {"max_cycles": 1})
            listed = (await client.list_resources()).resources
            best = cycled.structured_content["best"]
            manifest = await client.read_resource(f"improver://experiments/{best}/manifest")
            proposals = (await client.call_tool("propose_experiment", {"parent": cycled.structured_content["history"][0]["experiment"]}))
            first = proposals.structured_content["experiment"]
            reviewed = await client.call_tool("review_proposal", {"experiment_id": first["id"],
                                                                  "accept": [first["proposals"][0]["id"]],
                                                                  "reject_others": True})
            prompts = (await client.list_prompts()).prompts
            prompt = await client.get_prompt("review-proposal", {"experiment_id": best})
            return empty, cycled, listed, manifest, reviewed, prompts, prompt
    empty, cycled, listed, manifest, reviewed, prompts, prompt = anyio.run(main)
    assert not empty
    assert not cycled.is_error and cycled.structured_content["history"][0]["cycle"] == 0
    best = cycled.structured_content["best"]
    assert f"improver://experiments/{best}/manifest" in {str(r.uri) for r in listed}
    assert f"id: {best}" in manifest.contents[0].text
    assert not reviewed.is_error and reviewed.structured_content["shipped"].endswith("-review")
    assert len(reviewed.structured_content["accepted"]) == 1 and reviewed.structured_content["rejected"]
    assert {p.name for p in prompts} == {"improve-agent", "review-proposal"}
    assert f"experiment {best}" in prompt.messages[0].content.text and "# Reviewing a proposal" in prompt.messages[0].content.text
