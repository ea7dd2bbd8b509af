"""The default graph store (``graph_store: networkx``): the context graph as two SQLite
tables in the project folder, read in parts.

``nodes(key, label, props)`` holds each node's properties as JSON text and
``edges(source, type, target)`` its edges; both are plain data, so opening a project
never runs code from it (the pickle this store once wrote is never read). Counts,
groupings and one session's subgraph are queries that touch only the rows they need;
``graph`` builds the whole graph as a networkx ``MultiDiGraph`` for callers that want
one. Without a path the tables live in memory.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator

import orjson

from improver.errors import StoreError
from improver.graphs import GROUPINGS, session_facts
from improver.models import ReviewedSession

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (key TEXT PRIMARY KEY, label TEXT NOT NULL, props TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS edges (source TEXT NOT NULL, type TEXT NOT NULL, target TEXT NOT NULL,
                                  PRIMARY KEY (source, type, target)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nodes_by_label ON nodes (label);
CREATE INDEX IF NOT EXISTS edges_by_type ON edges (type, target);
"""
BATCH = 5000  # sessions per transaction
UPSERT_NODE = "INSERT INTO nodes VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET label = excluded.label, props = excluded.props"
ADD_EDGE = "INSERT OR IGNORE INTO edges VALUES (?, ?, ?)"
# Sessions per group, and how many of them the human overrode (review:<id> OVERRIDES decision:<id>).
GROUP_QUERIES = {
    "entity": ("INVOLVES", "session:"), "band": ("IN_BAND", "session:"), "precedent": ("CITES_PRECEDENT", "review:")}
GROUP_SQL = """
SELECT g.target, COUNT(*), COUNT(o.source) FROM edges g
LEFT JOIN edges o ON o.source = 'review:' || substr(g.source, :skip) AND o.type = 'OVERRIDES'
                 AND o.target = 'decision:' || substr(g.source, :skip)
WHERE g.type = :type GROUP BY g.target
"""


def _props(**properties) -> str:
    try:
        return orjson.dumps(properties, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. an integer beyond 64 bits
        return json.dumps(properties, default=str)


class NetworkxGraphStore:
    def __init__(self, path: Path | None = None):
        self.path = path
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            # MCP tools run one at a time in a worker thread, so one connection serves every thread
            self.db = sqlite3.connect(":memory:" if path is None else str(path), check_same_thread=False)
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot read graph {path}: {error}; delete it and it is rebuilt from the traces") from error
        self._memo: dict = {}  # query results, until the next write here or elsewhere
        self._version = None

    # --- writing ---------------------------------------------------------------------
    def load(self, sessions: Iterable[ReviewedSession], entity_fields: list[str], bands: dict[str, list[float]]) -> int:
        written, batch = 0, []
        for s in sessions:
            batch.append(s)
            if len(batch) == BATCH:
                written += self._write(batch, entity_fields, bands)
                batch = []
        return written + (self._write(batch, entity_fields, bands) if batch else 0)

    def _write(self, sessions: list[ReviewedSession], entity_fields: list[str], bands: dict[str, list[float]]) -> int:
        nodes, edges, reviews = [], [], []
        for s in sessions:
            sid = s.session_id
            session, decision, review = f"session:{sid}", f"decision:{sid}", f"review:{sid}"
            nodes += [(session, "Session", _props(id=sid, case=s.case)),
                      (decision, "Decision", _props(decision=s.agent_decision, confidence=s.agent_confidence,
                                                    reasoning=s.agent_reasoning, cited=s.cited)),
                      (review, "Review", _props(decision=s.human_decision, reviewer=s.reviewer, reasoning=s.human_reasoning,
                                                precedent=s.precedent, conditions=s.conditions, confidence=s.human_confidence))]
            edges += [(session, "DECIDED", decision), (session, "REVIEWED", review)]
            reviews.append((review,))  # a new review replaces the old overrides and precedent
            if s.human_decision != s.agent_decision:
                edges.append((review, "OVERRIDES", decision))
            if s.precedent:
                nodes.append((f"precedent:{s.precedent}", "Precedent", _props(name=s.precedent)))
                edges.append((review, "CITES_PRECEDENT", f"precedent:{s.precedent}"))
            facts = session_facts(s, entity_fields, bands)
            for field, value in facts["entities"]:
                nodes.append((f"entity:{field}:{value}", "Entity", _props(field=field, value=value)))
                edges.append((session, "INVOLVES", f"entity:{field}:{value}"))
            for field, label in facts["bands"]:
                nodes.append((f"band:{field}:{label}", "Band", _props(field=field, band=label)))
                edges.append((session, "IN_BAND", f"band:{field}:{label}"))
        with self._writing():
            self.db.executemany("DELETE FROM edges WHERE source = ? AND type IN ('OVERRIDES', 'CITES_PRECEDENT')", reviews)
            self.db.executemany(UPSERT_NODE, nodes)
            self.db.executemany(ADD_EDGE, edges)
        return len(sessions)

    def add_experiment(self, experiment_id: str, parent: str | None, precedents: list[str]) -> None:
        node = f"experiment:{experiment_id}"
        nodes, edges = [(node, "Experiment", _props(id=experiment_id))], []
        if parent:
            nodes.append((f"experiment:{parent}", "Experiment", _props(id=parent)))
            edges.append((node, "CHILD_OF", f"experiment:{parent}"))
        for name in precedents:
            nodes.append((f"precedent:{name}", "Precedent", _props(name=name)))
            edges.append((node, "PROPOSES", f"precedent:{name}"))
        with self._writing():
            self.db.executemany(UPSERT_NODE, nodes)
            self.db.executemany(ADD_EDGE, edges)

    def _writing(self):
        self._memo.clear()
        return self.db  # a transaction: committed on success, rolled back on error

    # --- reading ---------------------------------------------------------------------
    def _remembered(self, key, compute):
        version = self.db.execute("PRAGMA data_version").fetchone()[0]  # changes when another connection commits
        if version != self._version:
            self._memo.clear()
            self._version = version
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def summary(self) -> dict:
        counts = self._remembered("summary", lambda: {
            "nodes": dict(self.db.execute("SELECT label, COUNT(*) FROM nodes GROUP BY label")),
            "edges": dict(self.db.execute("SELECT type, COUNT(*) FROM edges GROUP BY type"))})
        return {"nodes": dict(counts["nodes"]), "edges": dict(counts["edges"])}

    def session(self, session_id: str) -> dict | None:
        root = f"session:{session_id}"
        if self.db.execute("SELECT 1 FROM nodes WHERE key = ?", (root,)).fetchone() is None:
            return None
        rows = self.db.execute("SELECT source, type, target FROM edges WHERE source IN (?, ?)", (root, f"review:{session_id}"))
        edges = [{"source": a, "target": b, "type": t} for a, t, b in rows]
        keys = {root} | {e["target"] for e in edges if e["source"] == root}
        edges = [e for e in edges if e["source"] in keys]
        keys |= {e["target"] for e in edges}
        return {"nodes": sorted(self._nodes_by_key(keys), key=lambda n: n["key"]), "edges": edges}

    def _nodes_by_key(self, keys: set[str]) -> list[dict]:
        marks = ",".join("?" * len(keys))
        rows = self.db.execute(f"SELECT key, label, props FROM nodes WHERE key IN ({marks})", tuple(keys))
        return [{"key": key, "label": label, **orjson.loads(props)} for key, label, props in rows]

    def disagreements(self, by: str) -> list[dict]:
        if by not in GROUPINGS:
            raise ValueError(f"group by one of {', '.join(GROUPINGS)}, not {by!r}")
        return [dict(row) for row in self._remembered(("disagreements", by), lambda: self._group(by))]

    def _group(self, by: str) -> list[dict]:
        kind, prefix = GROUP_QUERIES[by]
        rows = [{"group": by, "key": target.split(":", 1)[1], "sessions": n, "disagreements": d}
                for target, n, d in self.db.execute(GROUP_SQL, {"type": kind, "skip": len(prefix) + 1})]
        return sorted(rows, key=lambda r: (-r["disagreements"], r["key"]))

    def nodes(self) -> Iterator[dict]:
        for key, label, props in self.db.execute("SELECT key, label, props FROM nodes"):
            yield {"label": label, **orjson.loads(props), "key": key}

    def edges(self) -> Iterator[dict]:
        for source, kind, target in self.db.execute("SELECT source, type, target FROM edges"):
            yield {"source": source, "target": target, "type": kind}

    @property
    def graph(self):
        """The whole graph as a networkx ``MultiDiGraph`` (edge keys are the edge types)."""
        import networkx as nx

        graph = nx.MultiDiGraph()
        graph.add_nodes_from((n.pop("key"), n) for n in self.nodes())
        graph.add_edges_from((e["source"], e["target"], e["type"], {"type": e["type"]}) for e in self.edges())
        return graph

    def close(self) -> None:
        self.db.close()
