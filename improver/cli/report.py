"""``improver report``: the static HTML report of an experiment (over ``improver.report``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from improver.cli.app import app, ProjectOption, console, workspace


@app.command("report")
def report_command(experiment_id: Optional[str] = typer.Argument(None, help="Experiment (default: the last accepted, "
                                                                             "else the best scored)."),
                   project: Path = ProjectOption,
                   out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file to write "
                                                                                "(default: reports/<experiment>.html).")):
    """Write one self-contained HTML file: agreement curve, confusion table, proposal cards, graph pictures."""
    from improver.report import write_report

    with workspace(project) as ws:
        path = write_report(ws, experiment_id, out)
    console.print(f"Wrote {path} ({path.stat().st_size / 1024:.0f} KB); open it in a browser, it fetches nothing.")
