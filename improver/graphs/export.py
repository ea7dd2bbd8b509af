"""Export a context graph as GraphML and as a Cypher script, from any GraphStore or a networkx graph.

GraphML opens in Gephi, yEd or networkx; the Cypher script loads the graph into Neo4j
(Browser, Bloom, ``cypher-shell -f``) with one statement a line: uniqueness
constraints first, then batched ``UNWIND … MERGE`` of nodes by label and of edges by
type, so running it twice loads the graph once. Nodes and edges are streamed, so a
large graph is never held in memory twice. Map and list values the target formats
cannot hold as properties are written as JSON text.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator
from xml.sax.saxutils import escape, quoteattr

from improver.graphs import label_of

BATCH = 500
GRAPHML_TYPES = {bool: "boolean", int: "long", float: "double", str: "string"}


def _streams(source):
    """``(nodes, edges)`` callables for a GraphStore or a networkx graph."""
    if hasattr(source, "nodes") and hasattr(source, "edges") and hasattr(source, "disagreements"):
        return source.nodes, source.edges
    graph = source

    def nodes() -> Iterator[dict]:
        for key, data in graph.nodes(data=True):
            yield {**data, "key": key}

    def edges() -> Iterator[dict]:
        for source_key, target_key, kind in graph.edges(keys=True):
            yield {"source": source_key, "target": target_key, "type": kind}
    return nodes, edges


def _plain(value):
    """A value GraphML and Neo4j properties can hold: maps, and lists of non-strings, become JSON text."""
    if isinstance(value, dict) or (isinstance(value, list) and not all(isinstance(v, str) for v in value)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def write_graphml(source, path: str | Path) -> dict:
    """Write the graph as GraphML; returns ``{"nodes": n, "edges": m}``."""
    nodes, edges = _streams(source)
    types: dict[str, str] = {}
    counts = {"nodes": 0, "edges": 0}
    with tempfile.TemporaryFile("w+", encoding="utf-8") as body:
        for node in nodes():
            data = []
            for name, value in sorted(node.items()):
                value = _plain(value)
                if name == "key" or value is None:
                    continue
                if isinstance(value, list):
                    value = json.dumps(value)
                kind = GRAPHML_TYPES.get(type(value), "string")
                types[name] = kind if types.get(name, kind) == kind else "string"
                text = str(value).lower() if isinstance(value, bool) else str(value)
                data.append(f'<data key={quoteattr("n_" + name)}>{escape(text)}</data>')
            body.write(f'<node id={quoteattr(node["key"])}>{"".join(data)}</node>\n')
            counts["nodes"] += 1
        for edge in edges():
            body.write(f'<edge source={quoteattr(edge["source"])} target={quoteattr(edge["target"])}>'
                       f'<data key="e_type">{escape(edge["type"])}</data></edge>\n')
            counts["edges"] += 1
        body.seek(0)
        with Path(path).open("w", encoding="utf-8") as out:
            out.write('<?xml version="1.0" encoding="UTF-8"?>\n'
                      '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">\n')
            for name, kind in sorted(types.items()):
                out.write(f'<key id={quoteattr("n_" + name)} for="node" attr.name={quoteattr(name)} attr.type="{kind}"/>\n')
            out.write('<key id="e_type" for="edge" attr.name="type" attr.type="string"/>\n'
                      '<graph edgedefault="directed">\n')
            shutil.copyfileobj(body, out)
            out.write("</graph>\n</graphml>\n")
    return counts


def cypher_literal(value) -> str:
    """``value`` as a Cypher literal (maps as map literals)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(cypher_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"`{name}`: {cypher_literal(v)}" for name, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{text}'"


def _map(properties: dict) -> str:
    """A map literal of node properties, with values Neo4j can store."""
    return cypher_literal({name: _plain(value) for name, value in sorted(properties.items()) if value is not None})


def write_cypher(source, path: str | Path, batch: int = BATCH) -> dict:
    """Write a Cypher script that MERGEs the graph into Neo4j; returns ``{"nodes": n, "edges": m, "statements": s}``."""
    nodes, edges = _streams(source)
    counts = {"nodes": 0, "edges": 0, "statements": 0}
    with Path(path).open("w", encoding="utf-8") as out:
        def emit(statement: str) -> None:
            out.write(statement + ";\n")
            counts["statements"] += 1

        out.write("// improver context graph. Load with: cypher-shell -f <this file> (or paste into Neo4j Browser)\n")
        for label in ("Session", "Decision", "Review", "Entity", "Band", "Precedent", "Experiment"):
            emit(f"CREATE CONSTRAINT IF NOT EXISTS FOR (n:{label}) REQUIRE n.key IS UNIQUE")

        def flush_nodes(label: str, rows: list[str]) -> None:
            emit(f"UNWIND [{', '.join(rows)}] AS r MERGE (n:{label} {{key: r.key}}) SET n += r.props")

        def flush_edges(group: tuple[str, str, str], rows: list[str]) -> None:
            source_label, kind, target_label = group
            emit(f"UNWIND [{', '.join(rows)}] AS r MATCH (a:{source_label} {{key: r.s}}) "
                 f"MATCH (b:{target_label} {{key: r.t}}) MERGE (a)-[:{kind}]->(b)")

        _batched(((node.get("label") or label_of(node["key"]),
                   f"{{key: {cypher_literal(node['key'])}, props: "
                   f"{_map({k: v for k, v in node.items() if k not in ('key', 'label')})}}}") for node in nodes()),
                 flush_nodes, batch, counts, "nodes")
        _batched((((label_of(e["source"]), e["type"], label_of(e["target"])),
                   f"{{s: {cypher_literal(e['source'])}, t: {cypher_literal(e['target'])}}}") for e in edges()),
                 flush_edges, batch, counts, "edges")
    return counts


def _batched(items, flush, batch: int, counts: dict, kind: str) -> None:
    """Group ``(group, row)`` pairs and hand each full group of ``batch`` rows to ``flush``."""
    pending: dict = {}
    for group, row in items:
        rows = pending.setdefault(group, [])
        rows.append(row)
        counts[kind] += 1
        if len(rows) >= batch:
            flush(group, rows)
            pending[group] = []
    for group, rows in pending.items():
        if rows:
            flush(group, rows)
