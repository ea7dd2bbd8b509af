"""``improver graph``: summarise the context graph and export it (GraphML, Cypher script).

``--store`` picks the graph store for one command (``networkx``, ``bolt://host:7687``,
``neo4j://host``); without it the project's ``graph_store`` in improver.yaml is used.
Credentials for a Bolt server come from NEO4J_USER/NEO4J_PASSWORD or NEO4J_AUTH.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from improver.cli.app import app, console

graph_app = typer.Typer(help="The context graph: summary and export.", no_args_is_help=True)
StoreOption = typer.Option(None, "--store", help="Graph store URL (networkx, bolt://…, neo4j://…); default: improver.yaml.")


def loaded_graph(project_folder: Path, store: str | None):
    """The project's graph store (or the one named by ``store``), holding every reviewed session."""
    from improver.project import Project
    from improver.workspace import Workspace

    project = Project.load(project_folder)
    if store:
        project = Project(project.root, project.config.model_copy(update={"graph_store": store}))
    return Workspace(project).graph()


@graph_app.command()
def summary(project: Path = typer.Option(Path("."), "--project", "-p", help="Project folder holding improver.yaml."),
            store: Optional[str] = StoreOption, top: int = typer.Option(5, min=0, help="Groups shown per grouping.")):
    """Node and edge counts, and where the reviewers disagree most (by entity, band, precedent)."""
    from rich.table import Table

    from improver.graphs import GROUPINGS

    graph = loaded_graph(project, store)
    try:
        counts = graph.summary()
        groups = {by: graph.disagreements(by)[:top] for by in GROUPINGS}
    finally:
        graph.close()
    console.print("Nodes: " + ", ".join(f"{label} {n}" for label, n in sorted(counts["nodes"].items())))
    console.print("Edges: " + ", ".join(f"{kind} {n}" for kind, n in sorted(counts["edges"].items())))
    for by, rows in groups.items():
        if not rows:
            continue
        table = Table(title=f"Disagreements by {by}")
        for column in (by, "sessions", "disagreements"):
            table.add_column(column, justify="left" if column == by else "right")
        for row in rows:
            table.add_row(row["key"], str(row["sessions"]), str(row["disagreements"]))
        console.print(table)


@graph_app.command()
def export(project: Path = typer.Option(Path("."), "--project", "-p", help="Project folder holding improver.yaml."),
           graphml: Optional[Path] = typer.Option(None, "--graphml", help="Write GraphML here (Gephi, yEd, networkx)."),
           cypher: Optional[Path] = typer.Option(None, "--cypher", help="Write a Cypher script here (Neo4j Browser, Bloom)."),
           store: Optional[str] = StoreOption):
    """Write the context graph as GraphML and/or a Cypher script."""
    from improver.errors import ImproverError
    from improver.graphs.export import write_cypher, write_graphml
    from improver.leakscan import LeakScan

    if not graphml and not cypher:
        raise ImproverError("nothing to export: pass --graphml FILE and/or --cypher FILE")
    graph = loaded_graph(project, store)
    from improver.project import Project

    scan = LeakScan.from_project(Project.load(project))
    try:
        if graphml:
            counts = write_graphml(graph, graphml)
            scan.check_file(graphml, f"the GraphML export {graphml}")
            console.print(f"Wrote {graphml}: {counts['nodes']} nodes, {counts['edges']} edges (GraphML)")
        if cypher:
            counts = write_cypher(graph, cypher)
            scan.check_file(cypher, f"the Cypher export {cypher}")
            console.print(f"Wrote {cypher}: {counts['statements']} statements for {counts['nodes']} nodes, "
                          f"{counts['edges']} edges (load with cypher-shell -f {cypher.name})")
    finally:
        graph.close()


app.add_typer(graph_app, name="graph")
