"""Graph stores: the context graph of sessions, decisions, reviews, entities, precedents,
bands and experiments, behind one small contract.

Nodes are keyed ``<label>:<key>`` (``session:PR-024``, ``entity:vendor:DataStream
Analytics``, ``band:amount:5000-50000``); edges are ``DECIDED``, ``REVIEWED``,
``OVERRIDES``, ``CITES_PRECEDENT``, ``INVOLVES``, ``IN_BAND``, ``CHILD_OF`` and
``PROPOSES``. The default store keeps SQLite tables in the project folder (networkx on demand);
heavier backends live in their own module behind an extra.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Protocol

from improver.models import ReviewedSession

GROUPINGS = ("entity", "band", "precedent")


def band_label(value: float, cuts: list[float]) -> str:
    """The band a number falls in: ``<5000``, ``5000-50000`` or ``>=50000``."""
    cuts = sorted(cuts)
    if value < cuts[0]:
        return f"<{cuts[0]:g}"
    for low, high in zip(cuts, cuts[1:]):
        if low <= value < high:
            return f"{low:g}-{high:g}"
    return f">={cuts[-1]:g}"


def session_facts(session: ReviewedSession, entity_fields: list[str], bands: dict[str, list[float]]) -> dict:
    """The plain facts a store writes for one session (shared by every backend)."""
    entities = [(f, str(session.case[f])) for f in entity_fields if session.case.get(f) not in (None, "")]
    in_bands = [(f, band_label(float(session.case[f]), cuts)) for f, cuts in bands.items()
                if isinstance(session.case.get(f), (int, float)) and not isinstance(session.case.get(f), bool) and cuts]
    return {"entities": entities, "bands": in_bands}


class GraphStore(Protocol):
    """What every graph backend provides."""

    def load(self, sessions: Iterable[ReviewedSession], entity_fields: list[str], bands: dict[str, list[float]]) -> int:
        """Merge sessions into the graph (idempotent); returns how many were written."""

    def add_experiment(self, experiment_id: str, parent: str | None, precedents: list[str]) -> None: ...

    def summary(self) -> dict:
        """``{"nodes": {label: n}, "edges": {type: n}}``."""

    def session(self, session_id: str) -> dict | None:
        """The context subgraph of one session: ``{"nodes": [...], "edges": [...]}``, or None."""

    def disagreements(self, by: str) -> list[dict]:
        """Groups by ``entity``/``band``/``precedent``: ``{group, key, sessions, disagreements}``, most first."""

    def nodes(self) -> Iterator[dict]:
        """Every node as ``{key, label, **properties}`` (streamed; for export)."""

    def edges(self) -> Iterator[dict]:
        """Every edge as ``{source, target, type}`` (streamed; for export)."""

    def close(self) -> None: ...


def label_of(key: str) -> str:
    """The label of a node from its key: ``session:PR-024`` is a ``Session``."""
    return key.split(":", 1)[0].title()


def open_graph_store(spec: str, project) -> GraphStore:
    """The store named by ``spec``: ``networkx`` (default) or a ``bolt://``/``neo4j://`` URL."""
    if spec in ("", "networkx"):
        from improver.graphs.networkx_store import NetworkxGraphStore

        return NetworkxGraphStore(project.data_dir / "graph.sqlite")
    if spec.split("://")[0] in ("bolt", "neo4j", "bolt+s", "neo4j+s"):
        from improver.graphs.neo4j_store import Neo4jGraphStore

        return Neo4jGraphStore(spec)
    from improver.errors import StoreError

    raise StoreError(f"unknown graph store {spec!r}; use 'networkx' or a bolt:// / neo4j:// URL")
