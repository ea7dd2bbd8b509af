"""One conformance suite for every GraphStore: networkx always, FalkorDB over Bolt always,
a real Neo4j when NEO4J_URI is set; then the Bolt store's faults and errors."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import pytest

from graph_servers import BoltBackend, FalkorServer, falkordb, neo4j_backend  # noqa: F401 (fixture)
from improver.errors import MissingExtraError, StoreError
from improver.graphs import GROUPINGS, session_facts
from improver.graphs.networkx_store import NetworkxGraphStore
from improver.models import ReviewedSession

ENTITY_FIELDS = ["vendor", "department"]
BANDS = {"amount": [1000, 10000]}
ODD_VENDOR = "O'Neil \"Quotes\" & <Co> \\ ü"


def session(sid, vendor, department, amount, agent, human, precedent=None, **case) -> ReviewedSession:
    return ReviewedSession(session_id=sid, case={"vendor": vendor, "department": department, "amount": amount, **case},
                           agent_decision=agent, agent_confidence="high" if agent == "approve" else None,
                           agent_reasoning="policy says so\nsecond line", cited=["policy:limits"], human_decision=human,
                           reviewer="vera", human_reasoning="because", precedent=precedent,
                           conditions=["amount > 1000"] if precedent else [])


def sessions() -> list[ReviewedSession]:
    return [
        session("S1", "Acme", "IT", 500, "approve", "approve"),
        session("S2", "Acme", "IT", 5000, "approve", "reject", "acme-hold"),
        session("S3", "Beta", "Ops", 20000, "approve", "escalate", "big-spend"),
        session("S4", "Beta", None, 15000, "escalate", "escalate", "big-spend"),
        session("S5", ODD_VENDOR, "Ops", "n/a", "reject", "approve", items=[{"sku": "x", "qty": 2}]),
    ]


def expected_groups(rows: list[ReviewedSession], by: str) -> list[dict]:
    counts = defaultdict(lambda: [0, 0])
    for s in rows:
        facts = session_facts(s, ENTITY_FIELDS, BANDS)
        keys = {"entity": [f"{f}:{v}" for f, v in facts["entities"]], "band": [f"{f}:{b}" for f, b in facts["bands"]],
                "precedent": [s.precedent] if s.precedent else []}[by]
        for key in keys:
            counts[key][0] += 1
            counts[key][1] += s.agent_decision != s.human_decision
    rows = [{"group": by, "key": k, "sessions": n, "disagreements": d} for k, (n, d) in counts.items()]
    return sorted(rows, key=lambda r: (-r["disagreements"], r["key"]))


EXPECTED_SUMMARY = {
    "nodes": {"Session": 5, "Decision": 5, "Review": 5, "Entity": 5, "Band": 3, "Precedent": 2},
    "edges": {"DECIDED": 5, "REVIEWED": 5, "OVERRIDES": 3, "CITES_PRECEDENT": 3, "INVOLVES": 9, "IN_BAND": 4},
}


@pytest.fixture(params=["networkx", "falkordb", "neo4j"])
def open_store(request, tmp_path):
    """Opens a store on one fresh graph; every call reopens the same graph."""
    opened = []
    if request.param == "networkx":
        def factory(**options):
            return NetworkxGraphStore(tmp_path / "graph.sqlite")
    else:
        backend = (BoltBackend("falkordb", request.getfixturevalue("falkordb").url, request.getfixturevalue("falkordb")) if request.param == "falkordb"
                   else neo4j_backend())
        if backend is None:
            pytest.skip("set NEO4J_URI (and NEO4J_USER/NEO4J_PASSWORD) to run the suite against a real Neo4j")
        url = backend.fresh_url()

        def factory(**options):
            return backend.open(url, **options)

    def open_(**options):
        opened.append(factory(**options))
        return opened[-1]
    yield open_
    for store in opened:
        store.close()
        if request.param == "falkordb":
            request.getfixturevalue("falkordb").settle()


def without_none(node: dict) -> dict:
    return {k: v for k, v in node.items() if v is not None}


def test_load_writes_every_node_and_edge_once(open_store):
    store = open_store(batch_size=2)
    assert store.load(sessions(), ENTITY_FIELDS, BANDS) == 5
    assert store.summary() == EXPECTED_SUMMARY
    assert store.load(sessions(), ENTITY_FIELDS, BANDS) == 5
    assert store.summary() == EXPECTED_SUMMARY


def test_graph_survives_reopening(open_store):
    open_store().load(sessions(), ENTITY_FIELDS, BANDS)
    assert open_store().summary() == EXPECTED_SUMMARY


@pytest.mark.parametrize("by", GROUPINGS)
def test_disagreements_are_grouped_like_the_reference(open_store, by):
    store = open_store()
    store.load(sessions(), ENTITY_FIELDS, BANDS)
    assert store.disagreements(by) == expected_groups(sessions(), by)


def test_unknown_grouping_is_refused(open_store):
    with pytest.raises(ValueError, match="group by one of"):
        open_store().disagreements("colour")


def test_a_new_review_replaces_the_old_overrides_and_precedent(open_store):
    store = open_store()
    store.load(sessions(), ENTITY_FIELDS, BANDS)
    revised = sessions()
    revised[0] = replace(revised[0], human_decision="reject", precedent="acme-hold")
    revised[1] = replace(revised[1], human_decision="approve", precedent=None)
    store.load(revised[:2], ENTITY_FIELDS, BANDS)
    assert store.summary() == EXPECTED_SUMMARY
    for by in GROUPINGS:
        assert store.disagreements(by) == expected_groups(revised, by)
    assert {e["type"] for e in store.session("S2")["edges"]} == {"DECIDED", "REVIEWED", "INVOLVES", "IN_BAND"}


def test_session_subgraph_holds_the_case_decision_review_and_context(open_store):
    store = open_store()
    store.load(sessions(), ENTITY_FIELDS, BANDS)
    subgraph = store.session("S5")
    nodes = {n["key"]: without_none(n) for n in subgraph["nodes"]}
    assert set(nodes) == {"session:S5", "decision:S5", "review:S5", f"entity:vendor:{ODD_VENDOR}", "entity:department:Ops"}
    assert nodes["session:S5"]["case"]["items"] == [{"sku": "x", "qty": 2}]
    assert nodes["session:S5"]["label"] == "Session"
    assert nodes["decision:S5"] == {"key": "decision:S5", "label": "Decision", "decision": "reject",
                                    "reasoning": "policy says so\nsecond line", "cited": ["policy:limits"]}
    assert nodes["review:S5"]["decision"] == "approve" and nodes["review:S5"]["conditions"] == []
    assert {(e["source"], e["type"], e["target"]) for e in subgraph["edges"]} == {
        ("session:S5", "DECIDED", "decision:S5"), ("session:S5", "REVIEWED", "review:S5"),
        ("review:S5", "OVERRIDES", "decision:S5"), ("session:S5", "INVOLVES", f"entity:vendor:{ODD_VENDOR}"),
        ("session:S5", "INVOLVES", "entity:department:Ops")}
    assert {(e["source"], e["type"], e["target"]) for e in store.session("S3")["edges"]} >= {
        ("review:S3", "CITES_PRECEDENT", "precedent:big-spend"), ("session:S3", "IN_BAND", "band:amount:>=10000")}
    assert store.session("nope") is None


def test_experiments_link_to_parent_and_proposed_precedents(open_store):
    store = open_store()
    store.load(sessions(), ENTITY_FIELDS, BANDS)
    for _ in range(2):
        store.add_experiment("0002-cycle-1", "0001-baseline", ["acme-hold", "new-precedent"])
    summary = store.summary()
    assert summary["nodes"]["Experiment"] == 2 and summary["nodes"]["Precedent"] == 3
    assert summary["edges"]["CHILD_OF"] == 1 and summary["edges"]["PROPOSES"] == 2


def test_nodes_and_edges_stream_the_whole_graph(open_store):
    store = open_store()
    store.load(sessions(), ENTITY_FIELDS, BANDS)
    nodes, edges = list(store.nodes()), list(store.edges())
    assert len(nodes) == sum(EXPECTED_SUMMARY["nodes"].values()) == len({n["key"] for n in nodes})
    assert len(edges) == sum(EXPECTED_SUMMARY["edges"].values())
    assert all(n["label"] == n["key"].split(":")[0].title() for n in nodes)
    assert {"source": "review:S2", "target": "precedent:acme-hold", "type": "CITES_PRECEDENT"} in edges


# --- the Bolt store's faults and errors ----------------------------------------------

def many_sessions(n: int) -> list[ReviewedSession]:
    return [session(f"M{i:03d}", ["Acme", "Beta", "Gamma"][i % 3], ["IT", "Ops"][i % 2], 300 * i,
                    "approve", "reject" if i % 4 == 0 else "approve", "hold" if i % 4 == 0 else None) for i in range(n)]


def test_server_stopping_mid_write_is_a_clear_error_and_the_rerun_completes_without_duplicates(tmp_path):
    server = FalkorServer(tmp_path / "server")
    server.start()
    try:
        url = server.url
        rows = many_sessions(60)

        def stopped_midway():
            for index, s in enumerate(rows):
                if index == 35:
                    server.stop()
                yield s
        store = BoltBackend("falkordb", url, server).open(url, batch_size=10, connection_timeout=3)
        with pytest.raises(StoreError, match="failed while writing 10 sessions.*run the same command again"):
            store.load(stopped_midway(), ENTITY_FIELDS, BANDS)
        store.driver.close()

        server.start()
        store = BoltBackend("falkordb", url, server).open(url, batch_size=10)
        assert 0 < store.summary()["nodes"]["Session"] < 60  # what was written before the stop is kept
        store.load(rows, ENTITY_FIELDS, BANDS)
        reference = NetworkxGraphStore()
        reference.load(rows, ENTITY_FIELDS, BANDS)
        assert store.summary() == reference.summary()
        assert store.disagreements("entity") == reference.disagreements("entity")
        store.close()
    finally:
        server.stop()


def test_unreachable_server_is_a_store_error_that_never_shows_the_password(monkeypatch):
    from graph_servers import free_port
    from improver.graphs.neo4j_store import Neo4jGraphStore

    monkeypatch.setenv("NEO4J_USER", "alice")
    monkeypatch.setenv("NEO4J_PASSWORD", "s3cret-pw")
    store = Neo4jGraphStore(f"bolt://127.0.0.1:{free_port()}", connection_timeout=2)
    with pytest.raises(StoreError, match="Check that the server is up") as raised:
        store.summary()
    assert "s3cret-pw" not in str(raised.value) and "s3cret-pw" not in repr(store)
    store.close()


def test_credentials_in_the_url_are_refused():
    from improver.graphs.neo4j_store import Neo4jGraphStore

    with pytest.raises(StoreError, match="NEO4J_USER and NEO4J_PASSWORD") as raised:
        Neo4jGraphStore("bolt://alice:s3cret-pw@127.0.0.1:7687")
    assert "s3cret-pw" not in str(raised.value)


def test_credentials_come_from_the_environment(monkeypatch):
    from improver.graphs.neo4j_store import credentials

    monkeypatch.delenv("NEO4J_USER", raising=False)
    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    monkeypatch.delenv("NEO4J_AUTH", raising=False)
    assert credentials() is None
    monkeypatch.setenv("NEO4J_AUTH", "neo4j/pa/ss")
    assert credentials() == ("neo4j", "pa/ss")


def test_without_the_driver_the_error_names_the_extra(monkeypatch, tmp_path):
    import sys

    from improver.graphs import open_graph_store

    monkeypatch.setitem(sys.modules, "neo4j", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'agent-improver\[neo4j\]'"):
        open_graph_store("bolt://127.0.0.1:7687", project=None)
    with pytest.raises(StoreError, match="unknown graph store"):
        open_graph_store("mongodb://x", project=None)
