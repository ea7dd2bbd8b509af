"""The default graph store: a networkx MultiDiGraph pickled in the project folder."""
from __future__ import annotations

import os
import pickle
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator

import networkx as nx

from improver.errors import StoreError
from improver.graphs import GROUPINGS, session_facts
from improver.models import ReviewedSession


class NetworkxGraphStore:
    def __init__(self, path: Path | None = None):
        self.path = path
        self.graph = nx.MultiDiGraph()
        if path is not None and path.exists():
            try:
                self.graph = pickle.loads(path.read_bytes())
            except Exception as error:
                raise StoreError(f"cannot read graph {path}: {error}; delete it and it is rebuilt from the traces") from error

    def _node(self, key: str, label: str, **properties) -> str:
        self.graph.add_node(key, label=label, **properties)
        return key

    def _edge(self, source: str, target: str, kind: str) -> None:
        if not self.graph.has_edge(source, target, key=kind):
            self.graph.add_edge(source, target, key=kind, type=kind)

    def load(self, sessions: Iterable[ReviewedSession], entity_fields: list[str], bands: dict[str, list[float]]) -> int:
        written = 0
        for s in sessions:
            session = self._node(f"session:{s.session_id}", "Session", id=s.session_id, case=s.case)
            decision = self._node(f"decision:{s.session_id}", "Decision", decision=s.agent_decision,
                                  confidence=s.agent_confidence, reasoning=s.agent_reasoning, cited=s.cited)
            review = self._node(f"review:{s.session_id}", "Review", decision=s.human_decision, reviewer=s.reviewer,
                                reasoning=s.human_reasoning, precedent=s.precedent, conditions=s.conditions)
            self._edge(session, decision, "DECIDED")
            self._edge(session, review, "REVIEWED")
            if s.human_decision != s.agent_decision:
                self._edge(review, decision, "OVERRIDES")
            elif self.graph.has_edge(review, decision, key="OVERRIDES"):
                self.graph.remove_edge(review, decision, key="OVERRIDES")
            for stale in [t for _, t, k in self.graph.out_edges(review, keys=True) if k == "CITES_PRECEDENT"]:
                self.graph.remove_edge(review, stale, key="CITES_PRECEDENT")
            if s.precedent:
                self._edge(review, self._node(f"precedent:{s.precedent}", "Precedent", name=s.precedent), "CITES_PRECEDENT")
            facts = session_facts(s, entity_fields, bands)
            for field, value in facts["entities"]:
                self._edge(session, self._node(f"entity:{field}:{value}", "Entity", field=field, value=value), "INVOLVES")
            for field, label in facts["bands"]:
                self._edge(session, self._node(f"band:{field}:{label}", "Band", field=field, band=label), "IN_BAND")
            written += 1
        self._save()
        return written

    def add_experiment(self, experiment_id: str, parent: str | None, precedents: list[str]) -> None:
        node = self._node(f"experiment:{experiment_id}", "Experiment", id=experiment_id)
        if parent:
            self._edge(node, self._node(f"experiment:{parent}", "Experiment", id=parent), "CHILD_OF")
        for name in precedents:
            self._edge(node, self._node(f"precedent:{name}", "Precedent", name=name), "PROPOSES")
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        temporary = self.path.with_suffix(".tmp")
        temporary.write_bytes(pickle.dumps(self.graph, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(temporary, self.path)

    def summary(self) -> dict:
        return {"nodes": dict(Counter(d["label"] for _, d in self.graph.nodes(data=True))),
                "edges": dict(Counter(k for _, _, k in self.graph.edges(keys=True)))}

    def session(self, session_id: str) -> dict | None:
        root = f"session:{session_id}"
        if root not in self.graph:
            return None
        keys = {root} | set(self.graph.successors(root))
        for key in list(keys):
            if key.startswith("review:"):
                keys |= set(self.graph.successors(key))
        nodes = [{"key": k, **self.graph.nodes[k]} for k in sorted(keys)]
        edges = [{"source": a, "target": b, "type": t} for a, b, t in self.graph.edges(keys, keys=True) if b in keys]
        return {"nodes": nodes, "edges": edges}

    def disagreements(self, by: str) -> list[dict]:
        if by not in GROUPINGS:
            raise ValueError(f"group by one of {', '.join(GROUPINGS)}, not {by!r}")
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for key in (k for k in self.graph if k.startswith("session:")):
            session_id = key.split(":", 1)[1]
            overridden = self.graph.has_edge(f"review:{session_id}", f"decision:{session_id}", key="OVERRIDES")
            if by == "precedent":
                groups = list(self.graph.successors(f"review:{session_id}"))
                groups = [g for g in groups if g.startswith("precedent:")]
            else:
                prefix = "entity:" if by == "entity" else "band:"
                groups = [g for g in self.graph.successors(key) if g.startswith(prefix)]
            for group in groups:
                counts[group][0] += 1
                counts[group][1] += int(overridden)
        rows = [{"group": by, "key": k.split(":", 1)[1], "sessions": n, "disagreements": d} for k, (n, d) in counts.items()]
        return sorted(rows, key=lambda r: (-r["disagreements"], r["key"]))

    def nodes(self) -> Iterator[dict]:
        for key, data in self.graph.nodes(data=True):
            yield {**data, "key": key}

    def edges(self) -> Iterator[dict]:
        for source, target, kind in self.graph.edges(keys=True):
            yield {"source": source, "target": target, "type": kind}

    def close(self) -> None:
        pass
