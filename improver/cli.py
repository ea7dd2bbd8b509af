"""The ``improver`` command line: a thin layer over ``Workspace``; errors become messages."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from improver.errors import ImproverError
from improver.scoring import confusion_table
from improver.workspace import Workspace

app = typer.Typer(help="Make AI agents agree with the humans who review them.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console(width=None if sys.stdout.isatty() else 120)  # piped output keeps whole tables
err = Console(stderr=True)
ProjectOption = typer.Option(Path("."), "--project", "-p", help="Project folder holding improver.yaml.")


@contextmanager
def workspace(project: Path, quiet: bool = False):
    """A Workspace with a progress bar for reruns."""
    if quiet or not sys.stderr.isatty():
        yield Workspace(project)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done)
        yield Workspace(project, progress=progress)


def pct(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def signed(value) -> str:
    return "" if value is None else f"{value * 100:+.1f} pts"


def history_table(history: list[dict]) -> Table:
    table = Table(title="Agreement with the human reviewers, cycle by cycle")
    for column in ("cycle", "experiment", "train", "held-out", "change (held-out)", "proposals kept", "regressions"):
        table.add_column(column, justify="right" if column != "experiment" else "left")
    for row in history:
        table.add_row("baseline" if row["cycle"] == 0 else str(row["cycle"]), row["experiment"], pct(row["train"]),
                      pct(row["heldout"]), signed(row["change"]), f"{row['kept']}/{row['proposed']}" if row["cycle"] else "",
                      str(row["regressions"]) if row["cycle"] else "")
    return table


def confusion(results: dict) -> Table:
    table = Table(title=f"{results['experiment']}: agent decision × human decision (all reviewed sessions)")
    for column in ("agent", "human", "status", "now", "parent"):
        table.add_column(column)
    for agent, human, status, now, before in confusion_table(results):
        table.add_row(agent, human, status, str(now), "" if before is None else str(before))
    return table


@app.command()
def ingest(sources: Optional[list[str]] = typer.Argument(None, help="Trace files, folders of span exports or URLs."),
           pulls: list[str] = typer.Option([], "--from", help="A source to pull, e.g. phoenix+http://127.0.0.1:6006/PROJECT."),
           project: Path = ProjectOption):
    """Read agent decisions and human reviews into the project's store (PII masked first)."""
    specs = [*(sources or []), *pulls]
    if not specs:
        raise ImproverError("give trace files or --from phoenix+http://HOST:PORT/PROJECT")
    with workspace(project) as ws:
        for spec in specs:
            report = ws.ingest(spec)
            console.print(f"[bold]{report.source}[/]: {report.events} events, {report.decisions_new} new decisions, "
                          f"{report.reviews_new} new reviews, {report.duplicates} already stored, "
                          f"{report.quarantined} quarantined")
            for reason, n in report.quarantine_reasons.items():
                console.print(f"  quarantined {n}: {reason}")
            if report.cleaned:
                console.print("  cleaned: " + ", ".join(f"{k} {v}" for k, v in sorted(report.cleaned.items())))
            if report.redacted:
                console.print("  masked: " + ", ".join(f"{k} {v}" for k, v in sorted(report.redacted.items())))
            if report.orphan_reviews:
                console.print(f"  {report.orphan_reviews} sessions have reviews but no agent decision yet")
            if report.re_reviewed_sessions:
                console.print(f"  {report.re_reviewed_sessions} sessions were reviewed more than once: latest review wins")


@app.command()
def mine(project: Path = ProjectOption, parent: Optional[str] = typer.Option(None, "--from", help="Experiment to mine against (default: baseline)."),
         as_json: bool = typer.Option(False, "--json"),
         agent: Optional[str] = typer.Option(None, "--agent", help="'claude': refine the proposals with the Claude mining agent (writes an experiment)."),
         model: str = "claude-sonnet-4-5", max_turns: int = typer.Option(40, min=1), max_budget: float = typer.Option(3.0, help="USD.")):
    """Show the precedents behind the disagreements (writes nothing; with --agent, writes an experiment)."""
    if agent:
        from improver.cli_mcp import mine_with_agent

        return mine_with_agent(project, parent, agent, model, max_turns, max_budget)
    with workspace(project) as ws:
        base = ws.experiments.get(parent) if parent else ws.baseline()
        result = ws.mine(base)
    if as_json:
        console.print_json(result.model_dump_json())
        return
    table = Table(title=f"Precedents in {result.sessions} training sessions ({result.disagreements} disagreements)")
    for column in ("precedent", "source", "decision", "condition", "support", "precision", "gain"):
        table.add_column(column)
    for p in result.precedents:
        table.add_row(p.name, p.source, p.decision, p.description or "[dim]weak: no condition[/]", str(p.support or p.group_size),
                      f"{p.precision:.0%}" if p.condition else "", f"{p.expected_gain:+d}" if p.condition else "")
    console.print(table)
    for finding in result.findings:
        console.print(f"[bold]{finding.kind}[/] ({finding.count}): {finding.summary}")
    console.print(f"Estimated ceiling (reviewer noise): {result.ceiling:.1%}")


@app.command()
def propose(project: Path = ProjectOption, parent: Optional[str] = typer.Option(None, "--from", help="Parent experiment (default: baseline).")):
    """Mine and write the proposals into a new experiment folder."""
    with workspace(project) as ws:
        base = ws.experiments.get(parent) if parent else ws.baseline()
        experiment = ws.propose(base, ws.mine(base), base.manifest.cycle + 1)
    if experiment is None:
        console.print("No precedent has enough evidence to propose.")
        raise typer.Exit(0)
    console.print(f"Wrote {experiment.path} with {len(experiment.manifest.proposals)} proposals.")


@app.command()
def run(experiment_id: str, project: Path = ProjectOption):
    """Rerun the target agent on every reviewed session with an experiment's config."""
    with workspace(project) as ws:
        decisions = ws.run(ws.experiments.get(experiment_id))
    errors = sum(1 for d in decisions.values() if d["decision"] == "error")
    console.print(f"{len(decisions)} decisions for {experiment_id}" + (f", {errors} errors" if errors else ""))


@app.command()
def score(experiment_id: str, project: Path = ProjectOption, as_json: bool = typer.Option(False, "--json")):
    """Score an experiment: agreement per split, confusion table, change, regressions."""
    with workspace(project) as ws:
        results = ws.score(ws.experiments.get(experiment_id))
    if as_json:
        console.print_json(json.dumps(results))
        return
    console.print(f"train {pct(results['train']['agreement'])}  held-out {pct(results['heldout']['agreement'])}  "
                  f"all {pct(results['all']['agreement'])}")
    if results.get("change"):
        console.print(f"change against {results['parent']}: train {signed(results['change']['train'])}, "
                      f"held-out {signed(results['change']['heldout'])}; {results['fixed']} fixed, "
                      f"{len(results['regressions'])} regressions")
    console.print(confusion(results))
    for pid, effect in results.get("per_proposal", {}).items():
        console.print(f"  {pid}: train {effect['train']:+d}, held-out {effect['heldout']:+d} (leave-one-out)")
    if results["errors"]["count"]:
        console.print(f"[red]{results['errors']['count']} sessions errored[/]: {results['errors']['examples']}")


@app.command()
def cycle(project: Path = ProjectOption, max_cycles: int = typer.Option(4, min=1), resume: bool = typer.Option(False, help="Finish the last interrupted run."),
          min_gain: float = typer.Option(0.005, help="Stop when held-out agreement rises less than this.")):
    """Run whole improvement cycles until agreement flattens or --max-cycles."""
    from improver.cycle import run_cycles

    with workspace(project) as ws:
        state = run_cycles(ws, max_cycles=max_cycles, min_gain=min_gain, resume=resume)
    console.print(history_table(state["history"]))
    console.print(f"Stopped: {state.get('stop_reason')}. Experiments in {ws.experiments.folder}")


@app.command()
def demo(folder: Path = typer.Option(Path("improver-demo"), "--dir", help="Where to make the demo project."),
         requests: int = typer.Option(130, "--requests", "-n", min=10), seed: int = 7, max_cycles: int = 4,
         tag_share: float = typer.Option(0.8, help="Share of reviews carrying a precedent tag."),
         inconsistency: float = typer.Option(0.05, help="How often the reviewer flips on a precedent case.")):
    """The whole loop on the bundled procurement example, in seconds and without model tokens."""
    import time

    from improver.cycle import run_cycles
    from improver.demo import make_demo_project

    started = time.perf_counter()
    path = make_demo_project(folder, n=requests, seed=seed, tag_share=tag_share, inconsistency=inconsistency)
    with workspace(path) as ws:
        report = ws.ingest(str(path / "traces.jsonl"))
        console.print(f"Ingested {report.events} events ({len(ws.sessions)} reviewed sessions; "
                      f"held-out share {ws.project.config.holdout:.0%}, never mined).")
        state = run_cycles(ws, max_cycles=max_cycles)
        final = ws.experiments.get(state["parent"]).results
    console.print(history_table(state["history"]))
    console.print(confusion(final) if final.get("parent") else "")
    console.print(f"Stopped: {state.get('stop_reason')}.\nExperiments: {ws.experiments.folder} "
                  f"(best: {state['parent']}); took {time.perf_counter() - started:.1f} s.")


# Commands of the other areas (MCP/Claude, PR review, graph export) register here.
from improver import cli_graph, cli_mcp, cli_pr  # noqa: E402

for _area in (cli_pr, cli_mcp, cli_graph):
    _area.register(app)


def main() -> None:
    try:
        app()
    except ImproverError as error:
        err.print(f"[red]error:[/] {error}")
        sys.exit(2)


if __name__ == "__main__":
    main()
