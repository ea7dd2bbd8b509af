"""The loop's commands: ``ingest``, ``mine``, ``propose``, ``run``, ``score``, ``cycle``, ``demo``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from improver.cli.app import (ProjectOption, RerunOption, WaitOption, app, confusion, console, err, history_table,
                              interval, pct, print_notices, signed, workspace)
from improver.errors import ImproverError


@app.command()
def ingest(sources: Optional[list[str]] = typer.Argument(None, help="Trace files, folders of span exports or URLs."),
           pulls: list[str] = typer.Option([], "--from", help="A source to pull, e.g. phoenix+http://127.0.0.1:6006/PROJECT."),
           project: Path = ProjectOption, as_json: bool = typer.Option(False, "--json", help="One JSON report per source."),
           wait: float = WaitOption):
    """Read agent decisions and human reviews into the project's store (PII masked first).

    Every row read is accounted for: joined into an event, ignored (with the reason), waiting
    for a span not stored yet (it joins when that span is ingested) or quarantined."""
    specs = [*(sources or []), *pulls]
    if not specs:
        raise ImproverError("give trace files or --from phoenix+http://HOST:PORT/PROJECT")
    reports = []
    with workspace(project, quiet=as_json, wait=wait) as ws:
        for spec in specs:
            report = ws.ingest(spec)
            reports.append(report.as_dict())
            if not as_json:
                print_ingest(report)
    if as_json:
        console.print_json(json.dumps(reports))


def print_ingest(report) -> None:
    console.print(f"[bold]{report.source}[/]: {report.events} events, {report.decisions_new} new decisions, "
                  f"{report.reviews_new} new reviews, {report.conflicting_decisions} conflicting decisions, "
                  f"{report.duplicates} already stored, {report.quarantined} quarantined")
    if report.unaccounted:
        console.print(f"  [red]{report.unaccounted} events were neither stored nor counted as duplicates (a bug: "
                      "please report it)[/]")
    console.print(f"  rows: {report.rows_read} read = {report.rows_joined} joined + {sum(report.rows_ignored.values())} "
                  f"ignored + {report.rows_waiting} waiting + {report.quarantined} quarantined")
    for reason, n in report.rows_ignored.items():
        console.print(f"  ignored {n}: {reason}")
    for reason, n in report.quarantine_reasons.items():
        console.print(f"  quarantined {n}: {reason}")
    if report.quarantined:
        console.print("  `improver quarantine` lists them as file:line: reason")
    if report.waiting_joined:
        console.print(f"  {report.waiting_joined} annotations stored earlier met their spans")
    if report.waiting_total:
        console.print(f"  {report.waiting_total} annotations wait for spans not stored yet ({', '.join(report.waiting_for)}"
                      f"{', …' if report.waiting_total > len(report.waiting_for) else ''}); they join when those spans "
                      "are ingested")
    if report.cleaned:
        console.print("  cleaned: " + ", ".join(f"{k} {v}" for k, v in sorted(report.cleaned.items())))
    if report.redacted:
        console.print("  masked: " + ", ".join(f"{k} {v}" for k, v in sorted(report.redacted.items())))
    if report.orphan_reviews:
        console.print(f"  {report.orphan_reviews} sessions have reviews but no agent decision yet")
    if report.re_reviewed_sessions:
        console.print(f"  {report.re_reviewed_sessions} sessions were reviewed more than once: latest review wins")
    if report.conflicting_decisions:
        more = ", …" if report.conflicting_decisions > len(report.conflicting_sessions) else ""
        console.print(f"  {report.conflicting_decisions} decisions differ from one already stored for their session "
                      f"({', '.join(report.conflicting_sessions)}{more}): all are kept, the one with the latest ts is used")


@app.command()
def mine(project: Path = ProjectOption, parent: Optional[str] = typer.Option(None, "--from", help="Experiment to mine against (default: baseline)."),
         as_json: bool = typer.Option(False, "--json"),
         agent: Optional[str] = typer.Option(None, "--agent", help="'claude': refine the proposals with the Claude mining agent (writes an experiment)."),
         model: str = "claude-sonnet-4-5", max_turns: int = typer.Option(40, min=1), max_budget: float = typer.Option(3.0, help="USD.")):
    """Show the precedents behind the disagreements (writes nothing; with --agent, writes an experiment)."""
    if agent:
        return mine_with_agent(project, parent, agent, model, max_turns, max_budget)
    with workspace(project) as ws:
        base = ws.experiments.get(parent) if parent else ws.baseline()
        result = ws.mine(base)
    if as_json:
        console.print_json(result.model_dump_json())
        return
    from rich.table import Table

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
def propose(project: Path = ProjectOption, parent: Optional[str] = typer.Option(None, "--from", help="Parent experiment (default: baseline)."),
            as_json: bool = typer.Option(False, "--json"), wait: float = WaitOption):
    """Mine and write the proposals into a new experiment folder."""
    with workspace(project, wait=wait) as ws:
        base = ws.experiments.get(parent) if parent else ws.baseline()
        cv = ws.cross_validate(base)
        experiment = ws.propose(base, cv.result, base.manifest.cycle + 1, cv=cv)
    if as_json:
        console.print_json(json.dumps({"parent": base.id, "experiment": experiment and experiment.id,
                                       "path": experiment and str(experiment.path),
                                       "proposals": [p.model_dump(mode="json") for p in experiment.manifest.proposals]
                                       if experiment else []}))
        return
    if experiment is None:
        console.print("No precedent with enough evidence is found by most folds.")
        raise typer.Exit(0)
    console.print(f"Wrote {experiment.path} with {len(experiment.manifest.proposals)} proposals.")


@app.command()
def run(experiment_id: str, project: Path = ProjectOption, as_json: bool = typer.Option(False, "--json"),
        wait: float = WaitOption, rerun: bool = RerunOption):
    """Rerun the target agent on every reviewed session with an experiment's config."""
    from collections import Counter

    with workspace(project, wait=wait, rerun=rerun) as ws:
        experiment = ws.experiments.get(experiment_id)
        if rerun and experiment.decisions is not None:
            experiment = ws.rerun_of(experiment)
            experiment_id = experiment.id
            err.print(f"rerun as {experiment.id}", highlight=False)
        decisions = ws.run(experiment)
    errors = sum(1 for d in decisions.values() if d["decision"] == "error")
    examples = sorted({d.get("error", "") for d in decisions.values() if d["decision"] == "error"})[:5]
    if as_json:
        console.print_json(json.dumps({"experiment": experiment_id, "decisions": len(decisions), "errors": errors,
                                       "by_decision": Counter(d["decision"] for d in decisions.values()),
                                       "error_examples": examples}))
        return
    if errors:
        err.print(f"[yellow]note:[/] {errors} of {len(decisions)} cases raised: {examples[0]}", highlight=False)
    console.print(f"{len(decisions)} decisions for {experiment_id}" + (f", {errors} errors" if errors else ""))
    print_reruns(ws)


@app.command()
def score(experiment_id: str, project: Path = ProjectOption, as_json: bool = typer.Option(False, "--json"),
          wait: float = WaitOption, rerun: bool = RerunOption):
    """Score an experiment: agreement per split, confusion table, change, regressions."""
    with workspace(project, wait=wait, rerun=rerun) as ws:
        experiment = ws.experiments.get(experiment_id)
        if rerun and experiment.decisions is not None:
            experiment = ws.rerun_of(experiment)
            err.print(f"rerun as {experiment.id}", highlight=False)
        results = ws.score(experiment)
    if as_json:
        console.print_json(json.dumps(results))
        return
    cv = results.get("cv") or {}
    console.print(f"in-sample {pct(results['train']['agreement'])}  out-of-fold {interval(cv | {'cv': cv.get('agreement'), 'cv_low': cv.get('low'), 'cv_high': cv.get('high')})}  "
                  f"test split {pct(results['heldout']['agreement'])}  all {pct(results['all']['agreement'])}")
    if results.get("change"):
        console.print(f"change against {results['parent']}: train {signed(results['change']['train'])}, "
                      f"held-out {signed(results['change']['heldout'])}; {results['fixed']} fixed, "
                      f"{len(results['regressions'])} regressions")
    console.print(confusion(results))
    for pid, effect in results.get("per_proposal", {}).items():
        console.print(f"  {pid}: train {effect['train']:+d}, held-out {effect['heldout']:+d} (leave-one-out)")
    print_notices(results)


@app.command()
def cycle(project: Path = ProjectOption, max_cycles: int = typer.Option(4, min=1), resume: bool = typer.Option(False, help="Finish the last interrupted run."),
          min_gain: float = typer.Option(0.005, help="Stop when held-out agreement rises less than this."),
          as_json: bool = typer.Option(False, "--json"), wait: float = WaitOption, rerun: bool = RerunOption):
    """Run whole improvement cycles until agreement flattens or --max-cycles."""
    with workspace(project, wait=wait, rerun=rerun) as ws:
        ws.start_target()  # the target's workers import it while LangGraph is imported here
        from improver.cycle import run_cycles

        existed = set(ws.experiments.ids())
        state = run_cycles(ws, max_cycles=max_cycles, min_gain=min_gain, resume=resume)
        notices = list(dict.fromkeys(n for row in state["history"] for n in
                                     (ws.experiments.get(row["experiment"]).results or {}).get("notices", [])))
        if not resume and {row["experiment"] for row in state["history"]} <= existed:
            notices.append("no new experiment: this run learned what earlier runs had, and their experiments stand "
                           "as they were decided and scored (--rerun runs the target again)")
    if as_json:
        console.print_json(json.dumps({**state, "notices": notices, "experiments": str(ws.experiments.folder)}))
        return
    console.print(history_table(state["history"]))
    print_notices({"notices": notices})
    console.print(f"Stopped: {state.get('stop_reason')}. Experiments in {ws.experiments.folder}")
    print_reruns(ws)


def print_reruns(ws) -> None:
    """How many cases the target decided in this command, and how many the decision cache answered."""
    runner = ws.__dict__.get("runner")  # only if this command ran the target
    if runner is not None and hasattr(runner, "hits"):
        console.print(f"Target: {runner.reruns:,} cases decided, {runner.hits:,} answered from the decision cache "
                      f"({runner.cache.path.name}).")


@app.command()
def demo(folder: Path = typer.Option(Path("improver-demo"), "--dir", help="Where to make the demo project."),
         requests: int = typer.Option(130, "--requests", "-n", min=10), seed: int = 7, max_cycles: int = 4,
         tag_share: float = typer.Option(0.8, help="Share of reviews carrying a precedent tag."),
         inconsistency: float = typer.Option(0.05, help="How often the reviewer flips on a precedent case."),
         as_json: bool = typer.Option(False, "--json", help="Print the ingest report, the cycles and the best scores as JSON.")):
    """The whole loop on the bundled procurement example, in seconds and without model tokens."""
    import time

    from improver.cycle import run_cycles
    from improver.demo import make_demo_project

    started = time.perf_counter()
    path = make_demo_project(folder, n=requests, seed=seed, tag_share=tag_share, inconsistency=inconsistency)
    with workspace(path) as ws:
        report = ws.ingest(str(path / "traces.jsonl"))
        config = ws.project.config
        if as_json:
            state = run_cycles(ws, max_cycles=max_cycles)
            console.print_json(json.dumps({"project": str(path), "ingest": report.as_dict(), **state,
                                           "best": ws.experiments.get(state["parent"]).results,
                                           "experiments": str(ws.experiments.folder),
                                           "seconds": round(time.perf_counter() - started, 1)}))
            return
        console.print(f"Ingested {report.events} events ({len(ws.sessions)} reviewed sessions; {config.folds}-fold "
                      f"cross-validated mining" + (f", locked test split {config.holdout:.0%}" if config.holdout else "") + ").")
        state = run_cycles(ws, max_cycles=max_cycles)
        final = ws.experiments.get(state["parent"]).results
    console.print(history_table(state["history"]))
    console.print(confusion(final) if final.get("parent") else "")
    console.print(f"Stopped: {state.get('stop_reason')}.\nExperiments: {ws.experiments.folder} "
                  f"(best: {state['parent']}); took {time.perf_counter() - started:.1f} s.")


def mine_with_agent(project: Path, parent: Optional[str], agent: str, model: str, max_turns: int,
                    max_budget: float) -> None:
    """``improver mine --agent claude``: the built-in proposals refined by the Claude mining agent."""
    from improver.mining_agent import check_credentials, mine_with_claude

    if agent != "claude":
        raise ImproverError(f"unknown mining agent {agent!r}; the one agent is 'claude' (omit --agent for the built-in miner)")
    check_credentials()
    with workspace(project) as ws:
        base = ws.experiments.get(parent) if parent else ws.baseline()
        outcome = mine_with_claude(ws, base, model=model, max_turns=max_turns, max_budget_usd=max_budget)
        built_in, refined = ws.score(outcome.built_in), ws.score(outcome.experiment)
    usage = outcome.usage
    cost = "unknown cost" if usage.cost_usd is None else f"${usage.cost_usd:.2f}"
    console.print(f"Claude mining agent ({usage.model}): {usage.turns} turns, {usage.tool_calls} tool calls, "
                  f"{usage.input_tokens} tokens in / {usage.output_tokens} out, {cost}; ended: {usage.stop}")
    console.print(f"Wrote {outcome.experiment.path} ({len(outcome.experiment.manifest.proposals)} proposals) refined from "
                  f"{outcome.built_in.id}.")
    console.print(f"Held-out agreement: refined {pct(refined['heldout']['agreement'])}, "
                  f"built-in {pct(built_in['heldout']['agreement'])}. Review with `improver pr {outcome.experiment.id}`.")
