"""``improver sources show FILE``: which layout a trace file is read as, and what each field resolves to."""
from __future__ import annotations

from pathlib import Path

import typer

from improver.cli.app import ProjectOption, app, console

sources_app = typer.Typer(help="Trace sources: see how a file is read before ingesting it.", no_args_is_help=True)


@sources_app.command("show")
def show(path: Path = typer.Argument(..., help="A trace file or folder."), project: Path = ProjectOption,
         as_json: bool = typer.Option(False, "--json")):
    """Print the layout sniffed and, for the first decision and review, the path each field was read from."""
    from rich.table import Table

    from improver.project import Project
    from improver.sources.explain import explain

    loaded = Project.load(project) if (project / "improver.yaml").exists() else None
    result = explain(str(path), loaded)
    if as_json:
        console.print_json(data=result)
        return
    console.print(f"[bold]{path}[/]: read as [bold]{result['layout']}[/]"
                  + (f" ({result['rows_read']} rows sampled)" if "rows_read" in result else ""))
    for kind, fields in result["fields"].items():
        table = Table(title=f"first {kind}: field ← where it was found (improver.yaml sources.spans.*)")
        for column in ("field", "read from", "path", "value"):
            table.add_column(column)
        for field, found in fields.items():
            if found["path"] is None and found["value"] is None:
                tried = found.get("tried", [])
                table.add_row(field, "[red]not found[/]", f"tried {', '.join(tried[:3])}"
                              + (f" (+{len(tried) - 3})" if len(tried) > 3 else ""), "")
            else:
                table.add_row(field, found["from"] or "", found["path"] or "", found["value"] or "")
        console.print(table)
    for kind in ("decision", "review"):
        if result.get(kind):
            console.print(f"{kind} event: {result[kind]}")
        else:
            console.print(f"[yellow]no {kind} found[/] in the rows sampled")
    if result.get("waiting"):
        console.print(f"{result['waiting']} annotations wait for spans not in this file (they join when those are ingested)")
    for reason, n in (result.get("ignored") or {}).items():
        console.print(f"ignored {n}: {reason}")
    for reason, n in (result.get("quarantined") or {}).items():
        console.print(f"quarantined {n}: {reason}")


app.add_typer(sources_app, name="sources")
