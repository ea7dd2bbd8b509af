"""A crafted graph file in the project never runs code: the graph is plain SQLite tables,
and the pickle an older store wrote is never opened (CLI and MCP, on real files)."""
from __future__ import annotations

import pickle
import subprocess
import sys

import anyio
import pytest
from mcp import Client

from improver.demo import make_demo_project
from improver.errors import StoreError
from improver.graphs.networkx_store import NetworkxGraphStore
from improver.mcp import build_server
from improver.workspace import Workspace


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.call, (["touch", self.marker],))


@pytest.fixture
def planted(tmp_path):
    project = make_demo_project(tmp_path / "demo", n=40)
    Workspace(project).ingest(str(project / "traces.jsonl"))
    marker = tmp_path / "pwned"
    data = project / ".improver"
    data.mkdir(exist_ok=True)
    (data / "graph.pickle").write_bytes(pickle.dumps(Payload(marker)))
    pickle.loads((data / "graph.pickle").read_bytes())  # the payload works: unpickling it runs the command
    assert marker.exists()
    marker.unlink()
    return project, marker


def test_cli_graph_summary_never_unpickles_a_planted_graph_file(planted):
    project, marker = planted
    done = subprocess.run([sys.executable, "-m", "improver.cli", "graph", "summary", "--project", str(project)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Session 40" in done.stdout and not marker.exists()


def test_mcp_graph_tools_never_unpickle_a_planted_graph_file(planted):
    project, marker = planted

    async def main():
        async with Client(build_server(project)) as client:
            summary = await client.call_tool("graph_summary", {})
            session = await client.call_tool("get_session", {"session_id": "PR-001"})
            return summary, session
    summary, session = anyio.run(main)
    assert not summary.is_error and summary.structured_content["nodes"]["Session"] == 40
    assert not session.is_error and session.structured_content["nodes"]
    assert not marker.exists()


def test_a_graph_file_that_is_not_a_database_is_a_store_error_saying_how_to_fix_it(tmp_path):
    path = tmp_path / "graph.sqlite"
    path.write_bytes(pickle.dumps(Payload(tmp_path / "pwned")))
    with pytest.raises(StoreError, match="delete it and it is rebuilt"):
        NetworkxGraphStore(path)
    assert not (tmp_path / "pwned").exists()
