"""Commands for human review: ``improver pr``, ``review``, ``log`` and ``diff`` (over ``improver.review``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from improver.cli.app import interval, app, ProjectOption, confusion, console, err, pct, print_notices, signed, workspace


def split_ids(values: list[str] | None) -> list[str]:
    """Ids given as repeated options and/or comma-separated lists."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def interactive() -> bool:
    """True when a person can answer prompts."""
    return sys.stdin.isatty()


@app.command()
def pr(experiment_id: str, project: Path = ProjectOption,
       remote: str = typer.Option("origin", help="Remote to push the branch to."),
       branch: Optional[str] = typer.Option(None, help="Branch name (default: improver/<experiment>)."),
       base: Optional[str] = typer.Option(None, help="Branch the PR targets (default: the current branch)."),
       push: Optional[bool] = typer.Option(None, "--push/--no-push",
                                           help="Push the branch (default: push and open the PR when gh is logged in).")):
    """Open an experiment as a branch and pull request whose description carries the evidence."""
    from improver import review as reviewing

    with workspace(project) as ws:
        made = reviewing.create_pr(ws, experiment_id, remote=remote, branch=branch, base=base, push=push)
    console.print(f"Committed {made.experiment} as {made.commit[:10]} on branch [bold]{made.branch}[/] "
                  f"in {made.repository} (your working tree is unchanged).")
    if made.url:
        console.print(f"Opened {made.url}")
        return
    console.print(f"# {made.title}\n\n{made.description}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"\nDescription written to {made.description_file}.")
    console.print("Open the PR with:" if made.pushed else "Push the branch and open the PR with:")
    for command in made.commands:
        console.print(command, markup=False, highlight=False, soft_wrap=True)

@app.command("review")
def review_command(experiment_id: str, project: Path = ProjectOption,
                   accept: Optional[list[str]] = typer.Option(None, help="Proposal ids to accept (repeat or comma-separate)."),
                   reject: Optional[list[str]] = typer.Option(None, help="Proposal ids to reject (repeat or comma-separate)."),
                   reject_others: bool = typer.Option(False, help="Reject every proposal not accepted."),
                   as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON (asks nothing).")):
    """Accept or reject proposals; the accepted ones ship in a rerun, rescored experiment."""
    accepted, rejected = split_ids(accept), split_ids(reject)
    with workspace(project) as ws:
        experiment = ws.experiments.get(experiment_id)
        if reject_others:
            rejected += [p.id for p in experiment.manifest.proposals if p.id not in accepted + rejected]
        effects = (experiment.results or {}).get("per_proposal", {})
        for p in experiment.manifest.proposals:
            if p.id in accepted or p.id in rejected or as_json or not interactive():
                continue
            effect = effects.get(p.id)
            console.print(f"\n[bold]{p.id}[/]: {p.decision} when {p.condition}\n  evidence: {p.support} sessions, "
                          f"precision {p.precision:.0%}" + (f"; leave-one-out effect train {effect['train']:+d}, "
                                                            f"held-out {effect['heldout']:+d}" if effect else ""))
            for quote in p.quotes[:2]:
                console.print(f'  reviewer: "{quote}"')
            (accepted if typer.confirm("Accept?", default=True) else rejected).append(p.id)
        from improver import review as reviewing

        outcome = reviewing.review(ws, experiment_id, accepted, rejected)
    if as_json:
        console.print_json(json.dumps({"experiment": outcome.experiment, "accepted": outcome.accepted,
                                       "rejected": outcome.rejected, "shipped": outcome.shipped,
                                       "results": outcome.results}))
        return
    console.print(f"Accepted {len(outcome.accepted)}, rejected {len(outcome.rejected)} proposals of {outcome.experiment}.")
    if outcome.shipped is None:
        console.print(f"{outcome.experiment} is rejected; nothing ships.")
        return
    results = outcome.results
    console.print(f"Ships as [bold]{outcome.shipped}[/]: train {pct(results['train']['agreement'])}, "
                  f"held-out {pct(results['heldout']['agreement'])}"
                  + (f" ({signed(results['change']['heldout'])} held-out vs {results['parent']})" if results.get("change") else "")
                  + f"; {len(results.get('regressions', []))} regressions.")
    if results.get("parent"):
        console.print(confusion(results))
    print_notices(results)
    console.print(f"Open it for review with `improver pr {outcome.shipped}`.")

@app.command("log")
def log_command(project: Path = ProjectOption, as_json: bool = typer.Option(False, "--json")):
    """The experiment tree with each experiment's scores and status."""
    from rich import box
    from rich.table import Table

    from improver import review as reviewing

    with workspace(project, quiet=True) as ws:
        rows = reviewing.log(ws)
    for experiment_id, reason in ws.experiments.skipped.items():
        err.print(f"[yellow]skipped {experiment_id}:[/] {reason}", highlight=False)
    if as_json:
        console.print_json(json.dumps(rows))
        return
    if not rows:
        err.print("No experiments yet: run `improver cycle` or `improver propose`.")
        return
    table = Table(title=f"Experiments in {ws.experiments.folder}", box=box.SIMPLE_HEAD)
    for column in ("experiment", "status", "rules", "in-sample", "out-of-fold (95% CI)", "Δ pts", "test split",
                   "κ test split", "regr."):
        table.add_column(column, justify="left" if column in ("experiment", "status") else "right",
                         no_wrap=column == "experiment")
    for row in rows:
        name = ("   " * (row["depth"] - 1) + "└─ " if row["depth"] else "") + row["experiment"]
        change = row.get("cv_change")
        table.add_row(name, row["status"], str(len(row["proposals"])), pct(row["train"]), interval(row),
                      "" if change is None else f"{change * 100:+.1f}", pct(row["heldout"]),
                      "–" if row.get("kappa") is None else f"{row['kappa']:.2f}",
                      "" if row["regressions"] is None else str(row["regressions"]))
    console.print(table)
    console.print("in-sample: the sessions the shipped rules were mined from (the figure comparable to the seed's); "
                  "out-of-fold: each session scored by rules mined without it.")

@app.command("diff")
def diff_command(a: str, b: str, project: Path = ProjectOption, as_json: bool = typer.Option(False, "--json")):
    """What changed between two experiments: their configs and, session by session, the decisions."""
    from rich.table import Table

    from improver import review as reviewing

    with workspace(project) as ws:
        changes = reviewing.diff(ws, a, b)
    if as_json:
        console.print_json(json.dumps(changes))
        return
    console.print(changes["config_diff"] or f"The configs of {a} and {b} are identical.", markup=False, highlight=False)
    if not changes["sessions"]:
        console.print(f"No session's decision changed from {a} to {b}.")
        return
    table = Table(title=f"Decisions that changed from {a} to {b}")
    for column in ("session", "split", "human", a, b, "now"):
        table.add_column(column)
    for c in changes["sessions"]:
        verdict = ("[green]fixed[/]" if c["agrees_now"] else "[red]regressed[/]" if c["agreed_before"]
                   else "still disagrees")
        table.add_row(c["session_id"], c["split"], c["human"], c["before"], c["now"], verdict)
    console.print(table)
    console.print(f"{changes['fixed']} fixed, {changes['broken']} regressed, {changes['still_wrong']} still disagree.")
