"""The Typer app and what every command group shares: options, consoles, the workspace, tables, ``main``."""
from __future__ import annotations

import gc
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from improver.errors import ImproverError

app = typer.Typer(help="Make AI agents agree with the humans who review them.", no_args_is_help=True,
                  rich_markup_mode=None,  # plain help: rendering it with rich imports ~0.3 s of modules
                  pretty_exceptions_enable=False)


class LazyConsole:
    """A rich Console made on first use, so `improver --help` does not import rich."""

    def __init__(self, **options):
        self._options, self._console = options, None

    def __getattr__(self, name: str):
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


console = LazyConsole(width=None if sys.stdout.isatty() else 120)  # piped output keeps whole tables
err = LazyConsole(stderr=True)
ProjectOption = typer.Option(Path("."), "--project", "-p", help="Project folder holding improver.yaml.")
WaitOption = typer.Option(0.0, "--wait", min=0, help="Seconds to wait for another command writing to the project "
                          "(default: stop at once, saying who writes).")
RerunOption = typer.Option(False, "--rerun", help="Run the target again even if an answer for this config, target "
                           "and agent version is already recorded (a new experiment folder; none is overwritten).")


@contextmanager
def workspace(project: Path, quiet: bool = False, wait: float = 0.0, rerun: bool = False):
    """A Workspace with a progress bar for reruns; ``wait``: seconds to wait for another writer."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from improver.workspace import Workspace

    if quiet or not sys.stderr.isatty():
        yield Workspace(project, wait=wait, notice=lambda text: err.print(text, highlight=False), rerun=rerun)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done)
        yield Workspace(project, progress=progress, wait=wait, notice=lambda text: err.print(text, highlight=False),
                        rerun=rerun)


def pct(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def signed(value) -> str:
    return "" if value is None else f"{value * 100:+.1f} pts"


def interval(row: dict) -> str:
    """An out-of-fold agreement with its 95% interval: ``81.5% (73.9–87.4)``."""
    if row.get("cv") is None:
        return "–"
    return f"{row['cv']:.1%} ({row['cv_low'] * 100:.1f}–{row['cv_high'] * 100:.1f})"


def history_table(history: list[dict]) -> "Table":
    from rich.table import Table

    table = Table(title="Agreement with the human reviewers, cycle by cycle", caption=(
        "in-sample: sessions the rules were mined from (comparable to the seed demo's figure); "
        "out-of-fold: each session scored by rules mined without it; test split: locked, never mined (holdout:)"))
    for column in ("cycle", "experiment", "in-sample", "out-of-fold (95% CI)", "change (out-of-fold)", "test split",
                   "proposals kept", "regressions"):
        table.add_column(column, justify="right" if column != "experiment" else "left")
    for row in history:
        table.add_row("baseline" if row["cycle"] == 0 else str(row["cycle"]), row["experiment"], pct(row["train"]),
                      interval(row), signed(row.get("cv_change")), pct(row["heldout"]),
                      f"{row['kept']}/{row['proposed']}" if row["cycle"] else "",
                      str(row["regressions"]) if row["cycle"] else "")
    return table


def confusion(results: dict) -> "Table":
    from rich.table import Table

    from improver.scoring import confusion_table

    table = Table(title=f"{results['experiment']}: agent decision × human decision (all reviewed sessions)")
    for column in ("agent", "human", "status", "now", "parent"):
        table.add_column(column)
    for agent, human, status, now, before in confusion_table(results):
        table.add_row(agent, human, status, str(now), "" if before is None else str(before))
    return table


def print_notices(results: dict | None) -> None:
    """The scores' notices (agent errors, proposals that changed nothing) on stderr."""
    for notice in (results or {}).get("notices", []):
        err.print(f"[yellow]note:[/] {notice}", markup=True, highlight=False)


def main() -> None:
    import improver.cli  # noqa: F401  (registers every command group)

    # A command runs once and exits, so the cyclic collector stays off: its passes over what a cycle
    # or an ingest built (rows and answers without cycles; ~0.2 s each at 100k sessions, the first
    # one as soon as a stage that paused it ends) free next to nothing. The MCP server runs on: it keeps it.
    collecting = gc.isenabled()
    if sys.argv[1:2] != ["serve"]:
        gc.disable()
    try:
        app()
    except ImproverError as error:
        err.print(f"[red]error:[/] {error}")
        sys.exit(2)
    finally:
        # Then the interpreter's last collections (or a caller's next one: main may run in a longer
        # process) would walk every object the command loaded (LangGraph, pydantic, numpy: ~0.4 s
        # after a small cycle): frozen first, nothing left is walked again; the collector as it was.
        gc.freeze()
        if collecting:
            gc.enable()
