"""The Neo4j graph store: the context graph in a Bolt server, shared by a team.

Talks to Neo4j (or FalkorDB's Bolt port) through the official ``neo4j`` driver, the
``improver[neo4j]`` extra. Writes go in batches (``UNWIND`` over one list parameter per
field) with ``MERGE`` on each node's ``key``, so loading the same sessions again changes nothing and an
interrupted load is finished by running it again; sessions whose facts are unchanged
since the last load are skipped. Disagreements are counted by the database. The Cypher
here is the subset both Neo4j and FalkorDB accept; every statement runs in its own
auto-commit transaction (FalkorDB's Bolt port does not keep explicit transactions).
FalkorDB's Bolt port also pastes parameters into the query text unescaped, into a small
buffer; for a server found (once, by a probe) to do that, the store writes the values
into the query as Cypher literals itself. FalkorDB evaluates such a query at about
10 MB/s, which holds a load to about 2,000 sessions/s; parameters have no such cost.
Credentials come from ``NEO4J_USER``/``NEO4J_PASSWORD`` or ``NEO4J_AUTH=user/password``
and never appear in messages.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from typing import Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

from improver.errors import StoreError, require
from improver.graphs import GROUPINGS, session_facts
from improver.graphs.export import cypher_literal
from improver.models import ReviewedSession

LABELS = ("Session", "Decision", "Review", "Entity", "Band", "Precedent", "Experiment")
INTERNAL = ("digest",)  # bookkeeping, not one of the graph's facts
GROUP_QUERIES = {
    "entity": "MATCH (s:Session)-[:INVOLVES]->(g:Entity) "
              "OPTIONAL MATCH (s)-[:REVIEWED]->(:Review)-[o:OVERRIDES]->() WITH g, s, count(o) AS overrides",
    "band": "MATCH (s:Session)-[:IN_BAND]->(g:Band) "
            "OPTIONAL MATCH (s)-[:REVIEWED]->(:Review)-[o:OVERRIDES]->() WITH g, s, count(o) AS overrides",
    "precedent": "MATCH (v:Review)-[:CITES_PRECEDENT]->(g:Precedent) "
                 "OPTIONAL MATCH (v)-[o:OVERRIDES]->() WITH g, v, count(o) AS overrides",
}

REMOVE_STALE_EDGES = """
UNWIND $rows AS r
MATCH (v:Review {key: r.review})-[e:OVERRIDES|CITES_PRECEDENT]->(t)
WHERE (type(e) = 'OVERRIDES' AND NOT r.overridden) OR (type(e) = 'CITES_PRECEDENT' AND t.key <> r.precedent_key)
DELETE e"""

MERGE_SHARED = """
UNWIND $entities AS e MERGE (x:Entity {key: e.key}) SET x.field = e.field, x.value = e.value
WITH count(*) AS done
UNWIND $bands AS b MERGE (x:Band {key: b.key}) SET x.field = b.field, x.band = b.band"""

# One list per field, the i-th entries making the i-th session: FalkorDB evaluates a batch
# of scalar lists about three times faster than the same batch as a list of maps.
SESSION_COLUMNS = ("session", "id", "case", "digest", "decision", "agent_decision", "agent_confidence", "agent_reasoning",
                   "cited", "review", "human_decision", "reviewer", "human_reasoning", "precedent", "conditions", "human_confidence",
                   "overridden", "precedents", "entity_keys", "band_keys")
MERGE_SESSIONS = """
UNWIND range(0, size($session) - 1) AS i
MERGE (s:Session {key: $session[i]})
SET s.id = $id[i], s.case = $case[i], s.digest = $digest[i]
MERGE (d:Decision {key: $decision[i]})
SET d.decision = $agent_decision[i], d.confidence = $agent_confidence[i], d.reasoning = $agent_reasoning[i],
    d.cited = $cited[i]
MERGE (v:Review {key: $review[i]})
SET v.decision = $human_decision[i], v.reviewer = $reviewer[i], v.reasoning = $human_reasoning[i],
    v.precedent = $precedent[i], v.conditions = $conditions[i], v.confidence = $human_confidence[i]
MERGE (s)-[:DECIDED]->(d)
MERGE (s)-[:REVIEWED]->(v)
FOREACH (_ IN CASE WHEN $overridden[i] THEN [1] ELSE [] END | MERGE (v)-[:OVERRIDES]->(d))
FOREACH (name IN $precedents[i] |
    MERGE (p:Precedent {key: 'precedent:' + name}) SET p.name = name MERGE (v)-[:CITES_PRECEDENT]->(p))
FOREACH (key IN $entity_keys[i] | MERGE (x:Entity {key: key}) MERGE (s)-[:INVOLVES]->(x))
FOREACH (key IN $band_keys[i] | MERGE (x:Band {key: key}) MERGE (s)-[:IN_BAND]->(x))"""


def _session_row(s: ReviewedSession, entity_fields: list[str], bands: dict[str, list[float]]) -> dict:
    facts = session_facts(s, entity_fields, bands)
    row = {
        "id": s.session_id, "case": json.dumps(s.case, sort_keys=True, default=str),
        "overridden": s.human_decision != s.agent_decision,
        "agent_decision": s.agent_decision, "agent_confidence": s.agent_confidence,
        "agent_reasoning": s.agent_reasoning, "cited": list(s.cited),
        "human_decision": s.human_decision, "reviewer": s.reviewer, "human_reasoning": s.human_reasoning,
        "precedent": s.precedent, "conditions": list(s.conditions), "human_confidence": s.human_confidence,
        "precedents": [s.precedent] if s.precedent else [],
        "entities": [{"key": f"entity:{f}:{v}", "field": f, "value": v} for f, v in facts["entities"]],
        "bands": [{"key": f"band:{f}:{b}", "field": f, "band": b} for f, b in facts["bands"]],
    }
    row["digest"] = hashlib.sha1(json.dumps(row, sort_keys=True).encode()).hexdigest()
    row.update(session=f"session:{s.session_id}", decision=f"decision:{s.session_id}", review=f"review:{s.session_id}",
               precedent_key=f"precedent:{s.precedent}" if s.precedent else "",
               entity_keys=[e["key"] for e in row["entities"]], band_keys=[b["key"] for b in row["bands"]])
    return row


def _inlined(query: str, parameters: dict) -> str:
    """``query`` with each ``$name`` replaced by its value as a Cypher literal."""
    return re.sub(r"\$(\w+)", lambda match: cypher_literal(parameters[match.group(1)]), query)


def credentials() -> tuple[str, str] | None:
    """``(user, password)`` from the environment, or None for a server without auth."""
    if os.environ.get("NEO4J_AUTH"):
        user, _, password = os.environ["NEO4J_AUTH"].partition("/")
        return user, password
    if os.environ.get("NEO4J_USER") or os.environ.get("NEO4J_PASSWORD"):
        return os.environ.get("NEO4J_USER", "neo4j"), os.environ.get("NEO4J_PASSWORD", "")
    return None


class Neo4jGraphStore:
    """A GraphStore over Bolt. ``url`` is ``bolt://host:port[/database]`` or ``neo4j://…``."""

    def __init__(self, url: str, batch_size: int = 2000, database: str | None = None, connection_timeout: float = 10.0):
        neo4j = require("neo4j", "the Neo4j graph store", "neo4j")
        parts = urlsplit(url)
        if parts.password or parts.username:
            raise StoreError("put graph store credentials in NEO4J_USER and NEO4J_PASSWORD (or NEO4J_AUTH=user/password), "
                             "not in the store URL")
        self.url = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self.database = database or parts.path.strip("/") or os.environ.get("NEO4J_DATABASE") or None
        self.batch_size = batch_size
        self._errors = (neo4j.exceptions.DriverError, neo4j.exceptions.Neo4jError, OSError)
        self._auth_error = neo4j.exceptions.AuthError
        self._connection_errors = (neo4j.exceptions.ServiceUnavailable, neo4j.exceptions.SessionExpired)
        self._schema_ready = False
        self._pastes_parameters: bool | None = None
        with self._guard("connecting"):
            self.driver = neo4j.GraphDatabase.driver(self.url, auth=credentials(), connection_timeout=connection_timeout)

    def __repr__(self) -> str:
        return f"Neo4jGraphStore({self.url}{'/' + self.database if self.database else ''})"

    # --- plumbing ------------------------------------------------------------------
    @contextmanager
    def _guard(self, doing: str):
        try:
            yield
        except self._auth_error as error:
            raise StoreError(f"graph store {self.url} refused the credentials while {doing}: set NEO4J_USER and "
                             "NEO4J_PASSWORD (or NEO4J_AUTH=user/password) for this server") from error
        except self._errors as error:
            message = " ".join((getattr(error, "message", None) or str(error) or type(error).__name__).split())
            raise StoreError(f"graph store {self.url} failed while {doing}: {message}. Check that the server is up; "
                             "writes are idempotent, so run the same command again once it is") from error

    def _run(self, query: str, **parameters) -> list[dict]:
        """Run one statement; a dropped connection is retried once (every statement here is idempotent)."""
        try:
            return self._run_once(query, parameters)
        except self._connection_errors:
            time.sleep(0.2)
            return self._run_once(query, parameters)

    def _run_once(self, query: str, parameters: dict) -> list[dict]:
        with self.driver.session(database=self.database) as session:
            if self._pastes_parameters is None:
                probe = "it\\'s"
                self._pastes_parameters = session.run("RETURN $probe AS probe", probe=probe).single()["probe"] != probe
            if self._pastes_parameters:
                return session.run(_inlined(query, parameters)).data()
            return session.run(query, parameters).data()

    def _stream(self, query: str, doing: str) -> Iterator[dict]:
        with self._guard(doing), self.driver.session(database=self.database) as session:
            for record in session.run(query):
                yield record.data()

    def _ensure_schema(self) -> None:
        """A unique constraint (Neo4j) or an index (FalkorDB) on ``key`` per label, made once."""
        if self._schema_ready:
            return
        with self._guard("creating constraints"):
            try:
                for label in LABELS:
                    self._run(f"CREATE CONSTRAINT IF NOT EXISTS FOR (n:{label}) REQUIRE n.key IS UNIQUE")
            except self._errors[1]:  # no such syntax: FalkorDB, whose indexes are made one by one
                indexed = {row["label"] for row in self._run("CALL db.indexes() YIELD label RETURN label")}
                for label in LABELS:
                    if label not in indexed:
                        self._run(f"CREATE INDEX FOR (n:{label}) ON (n.key)")
        self._schema_ready = True

    # --- writing -------------------------------------------------------------------
    def load(self, sessions: Iterable[ReviewedSession], entity_fields: list[str], bands: dict[str, list[float]]) -> int:
        self._ensure_schema()
        written, batch = 0, []
        for s in sessions:
            batch.append(_session_row(s, entity_fields, bands))
            if len(batch) >= self.batch_size:
                written += self._write(batch)
                batch = []
        if batch:
            written += self._write(batch)
        return written

    def _write(self, rows: list[dict]) -> int:
        with self._guard(f"writing {len(rows)} sessions"):
            stored = {r["key"]: r["digest"] for r in self._run(
                "UNWIND $keys AS k MATCH (s:Session {key: k}) RETURN s.key AS key, s.digest AS digest",
                keys=[r["session"] for r in rows])}
            changed = [r for r in rows if stored.get(r["session"]) != r["digest"]]
            if changed:
                self._run(REMOVE_STALE_EDGES, rows=[{k: r[k] for k in ("review", "overridden", "precedent_key")}
                                                    for r in changed if r["session"] in stored])
                entities = {e["key"]: e for r in changed for e in r["entities"]}
                bands = {b["key"]: b for r in changed for b in r["bands"]}
                self._run(MERGE_SHARED, entities=list(entities.values()), bands=list(bands.values()))
                self._run(MERGE_SESSIONS, **{name: [r[name] for r in changed] for name in SESSION_COLUMNS})
        return len(rows)

    def add_experiment(self, experiment_id: str, parent: str | None, precedents: list[str]) -> None:
        self._ensure_schema()
        with self._guard(f"recording experiment {experiment_id}"):
            self._run("""MERGE (x:Experiment {key: 'experiment:' + $id}) SET x.id = $id
                         FOREACH (p IN $parents | MERGE (y:Experiment {key: 'experiment:' + p}) SET y.id = p
                                                  MERGE (x)-[:CHILD_OF]->(y))
                         FOREACH (name IN $precedents | MERGE (q:Precedent {key: 'precedent:' + name}) SET q.name = name
                                                        MERGE (x)-[:PROPOSES]->(q))""",
                      id=experiment_id, parents=[parent] if parent else [], precedents=list(precedents))

    # --- reading -------------------------------------------------------------------
    def summary(self) -> dict:
        with self._guard("counting nodes and edges"):
            nodes = self._run("MATCH (n) RETURN labels(n)[0] AS label, count(n) AS n")
            edges = self._run("MATCH ()-[r]->() RETURN type(r) AS type, count(r) AS n")
        return {"nodes": {r["label"]: r["n"] for r in nodes}, "edges": {r["type"]: r["n"] for r in edges}}

    def session(self, session_id: str) -> dict | None:
        with self._guard(f"reading session {session_id}"):
            nodes = self._run("MATCH (:Session {key: $key})-[*0..2]->(n) RETURN DISTINCT n.key AS key, "
                              "labels(n)[0] AS label, properties(n) AS properties", key=f"session:{session_id}")
            edges = self._run("MATCH p = (:Session {key: $key})-[*1..2]->() UNWIND relationships(p) AS r "
                              "RETURN DISTINCT startNode(r).key AS source, endNode(r).key AS target, type(r) AS type",
                              key=f"session:{session_id}")
        if not nodes:
            return None
        return {"nodes": sorted((self._node(row) for row in nodes), key=lambda n: n["key"]),
                "edges": sorted(edges, key=lambda e: (e["source"], e["target"], e["type"]))}

    @staticmethod
    def _node(row: dict) -> dict:
        properties = {k: v for k, v in row["properties"].items() if k not in INTERNAL}
        if row["label"] == "Session" and isinstance(properties.get("case"), str):
            properties["case"] = json.loads(properties["case"])
        return {**properties, "key": row["key"], "label": row["label"]}

    def disagreements(self, by: str) -> list[dict]:
        if by not in GROUPINGS:
            raise ValueError(f"group by one of {', '.join(GROUPINGS)}, not {by!r}")
        query = (GROUP_QUERIES[by] + " RETURN g.key AS key, count(*) AS sessions, "
                 "sum(CASE WHEN overrides > 0 THEN 1 ELSE 0 END) AS disagreements ORDER BY disagreements DESC, key")
        with self._guard(f"grouping disagreements by {by}"):
            rows = self._run(query)
        return [{"group": by, "key": r["key"].split(":", 1)[1], "sessions": int(r["sessions"]),
                 "disagreements": int(r["disagreements"])} for r in rows]

    def nodes(self) -> Iterator[dict]:
        for row in self._stream("MATCH (n) RETURN n.key AS key, labels(n)[0] AS label, properties(n) AS properties",
                                "reading nodes"):
            yield self._node(row)

    def edges(self) -> Iterator[dict]:
        yield from self._stream("MATCH (a)-[r]->(b) RETURN a.key AS source, b.key AS target, type(r) AS type",
                                "reading edges")

    def close(self) -> None:
        self.driver.close()
