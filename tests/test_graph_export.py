"""GraphML and Cypher export, and the `improver graph` commands, on real files and a real Bolt server."""
from __future__ import annotations

import networkx as nx
import pytest
from typer.testing import CliRunner

from graph_servers import BoltBackend, falkordb, neo4j_backend  # noqa: F401 (fixture)
from improver.cli import app
from improver.graphs.export import write_cypher, write_graphml
from improver.graphs.networkx_store import NetworkxGraphStore
from test_graph_stores import BANDS, ENTITY_FIELDS, ODD_VENDOR, sessions


@pytest.fixture
def graph() -> NetworkxGraphStore:
    store = NetworkxGraphStore()
    store.load(sessions(), ENTITY_FIELDS, BANDS)
    store.add_experiment("0002-cycle-1", "0001-baseline", ["acme-hold"])
    return store


def test_graphml_round_trips_through_networkx(graph, tmp_path):
    counts = write_graphml(graph, tmp_path / "g.graphml")
    loaded = nx.read_graphml(tmp_path / "g.graphml")
    assert counts == {"nodes": graph.graph.number_of_nodes(), "edges": graph.graph.number_of_edges()}
    assert set(loaded.nodes) == set(graph.graph.nodes)
    assert loaded.nodes[f"entity:vendor:{ODD_VENDOR}"]["value"] == ODD_VENDOR
    assert loaded.nodes["decision:S5"]["reasoning"] == "policy says so\nsecond line"
    assert '"items"' in loaded.nodes["session:S5"]["case"]
    assert sorted(d["type"] for _, _, d in loaded.edges(data=True)) == sorted(k for _, _, k in graph.graph.edges(keys=True))


def test_export_takes_a_plain_networkx_graph_too(graph, tmp_path):
    assert write_graphml(graph.graph, tmp_path / "g.graphml")["nodes"] == graph.graph.number_of_nodes()
    assert write_cypher(graph.graph, tmp_path / "g.cypher")["edges"] == graph.graph.number_of_edges()


def script_statements(path, schema: bool) -> list[str]:
    lines = [line.rstrip().rstrip(";") for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("//") and (schema or not line.startswith("CREATE CONSTRAINT"))]


@pytest.mark.parametrize("server", ["falkordb", "neo4j"])
def test_cypher_script_loads_the_same_graph_into_a_bolt_server_twice_over(graph, tmp_path, request, server):
    backend = (BoltBackend("falkordb", request.getfixturevalue("falkordb").url, request.getfixturevalue("falkordb"))
               if server == "falkordb" else neo4j_backend())
    if backend is None:
        pytest.skip("set NEO4J_URI to load the script into a real Neo4j")
    counts = write_cypher(graph, tmp_path / "g.cypher", batch=3)
    assert counts["statements"] > 7
    store = backend.open(backend.fresh_url())
    try:
        for _ in range(2):  # MERGE all the way down: loading twice changes nothing
            for statement in script_statements(tmp_path / "g.cypher", schema=server == "neo4j"):
                store._run(statement)
        assert store.summary() == graph.summary()
        assert store.disagreements("entity") == graph.disagreements("entity")
        assert store.session("S5")["nodes"][-1]["key"] == "session:S5"
    finally:
        store.close()
        if backend.server:
            backend.server.settle()


def test_graph_commands_summarise_and_export_the_project_graph(tiny_project, tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(tiny_project / "traces.jsonl"), "-p", str(tiny_project)]).exit_code == 0
    result = runner.invoke(app, ["graph", "summary", "-p", str(tiny_project)])
    assert result.exit_code == 0, result.output
    assert "Session 80" in result.output and "login-outage" in result.output
    result = runner.invoke(app, ["graph", "export", "-p", str(tiny_project), "--graphml", str(tmp_path / "g.graphml"),
                                 "--cypher", str(tmp_path / "g.cypher")])
    assert result.exit_code == 0, result.output
    assert nx.read_graphml(tmp_path / "g.graphml").number_of_nodes() > 80 and (tmp_path / "g.cypher").stat().st_size


def test_graph_summary_on_a_bolt_store_given_with_store(tiny_project, falkordb):  # noqa: F811
    backend = BoltBackend("falkordb", falkordb.url, falkordb)
    url = backend.fresh_url()
    runner = CliRunner()
    runner.invoke(app, ["ingest", str(tiny_project / "traces.jsonl"), "-p", str(tiny_project)])
    result = runner.invoke(app, ["graph", "summary", "-p", str(tiny_project), "--store", url])
    falkordb.settle()
    assert result.exit_code == 0, result.output
    assert "Session 80" in result.output and "product:login" in result.output


def test_export_without_a_target_file_says_what_to_pass(tiny_project):
    from improver.cli import main

    import sys
    argv = sys.argv
    sys.argv = ["improver", "graph", "export", "-p", str(tiny_project)]
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = argv
    assert exited.value.code == 2
