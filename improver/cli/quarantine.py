"""``improver quarantine``: the input lines ingest set aside, as file:line: reason."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from improver.cli.app import ProjectOption, app, console, err, workspace


@app.command()
def quarantine(project: Path = ProjectOption, limit: int = typer.Option(100, min=1, help="Most lines shown."),
               raw: bool = typer.Option(False, "--raw", help="Show each line's text too."),
               as_json: bool = typer.Option(False, "--json")):
    """List quarantined input lines as file:line: reason (fix them and ingest the file again)."""
    with workspace(project, quiet=True) as ws, ws.store() as store:
        rows, total = store.quarantine(limit), store.counts()["quarantined"]
    if as_json:
        console.print_json(json.dumps({"total": total, "lines": rows}))
        return
    if not rows:
        err.print("Nothing is quarantined.")
        return
    for row in rows:
        console.print(f"{row['source']}:{row['line']}: {row['reason']}", markup=False, highlight=False, soft_wrap=True)
        if raw:
            console.print(f"    {row['raw'].strip()[:300]}", markup=False, highlight=False, soft_wrap=True)
    if total > len(rows):
        err.print(f"… and {total - len(rows)} more (--limit {total} shows them all)")
