"""Commands for live traffic: ``improver queue``, ``flag`` and ``precedents``."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional

import typer

from improver.cli.app import ProjectOption, app, console, err, workspace
from improver.errors import ImproverError


@app.command("queue")
def queue_command(project: Path = ProjectOption, n: int = typer.Option(50, "-n", min=1, help="How many sessions to pick."),
                  random_share: float = typer.Option(0.2, min=0.0, max=1.0,
                                                     help="Share picked at random (equal chances, spread over decisions and entities), for unbiased estimates."),
                  seed: int = typer.Option(0, help="Seed of the random share."),
                  since: Optional[str] = typer.Option(None, help="Only decisions at or after this timestamp."),
                  out: Optional[Path] = typer.Option(None, "--out", help="Write the picks as .jsonl or .csv for a labelling tool."),
                  to: Optional[str] = typer.Option(None, "--to", help="Annotate the picks on their spans in Phoenix: "
                                                   "phoenix+http://HOST:PORT/PROJECT."),
                  dry_run: bool = typer.Option(False, "--dry-run", help="Show the picks without recording them."),
                  as_json: bool = typer.Option(False, "--json")):
    """Pick the unreviewed decisions whose human review would teach the loop the most, and say why."""
    from improver.queue import build_queue, next_batch, picked_decisions, record

    if out and out.suffix not in (".jsonl", ".csv"):
        raise ImproverError(f"--out {out}: use a .jsonl or .csv file name")
    sent = None
    with workspace(project, quiet=as_json) as ws:
        with ws.store() as store:
            batch = next_batch(store.db)
        queue = build_queue(ws, n=n, random_share=random_share, seed=seed, since=since, batch=batch)
        if out:
            with ws.store() as store:
                decisions = picked_decisions(store.db, queue.picks)
            write_picks(out, queue.picks, ws.leak_scan, decisions)
        if to:
            from improver.queue_phoenix import send_to_phoenix

            sent = send_to_phoenix(ws, queue, to)
        if not dry_run:  # recorded once the picks reached the file and Phoenix: a failed run records nothing
            with ws.store() as store:
                record(store.db, queue)
    if as_json:
        console.print_json(json.dumps(dict(queue.as_dict(), phoenix=sent)))
        return
    if not queue.picks:
        err.print("Nothing to queue: every stored agent decision has a human review (ingest new traffic first).")
        return
    from rich.table import Table  # imported here: `improver --help` stays fast
    table = Table(title=f"Review next: {len(queue.picks)} of {queue.pending} unreviewed decisions "
                        f"(batch {queue.batch}; rules from {queue.reference or 'the baseline mining'})")
    for column in ("session", "agent", "picked by", "why"):
        table.add_column(column)
    for pick in queue.picks:
        table.add_row(pick.session_id, pick.agent_decision, pick.picked_by, pick.reason)
    console.print(table)
    console.print(("Not recorded (--dry-run)." if dry_run else f"Recorded as batch {queue.batch}: reviews of these "
                   "sessions count with their pick probability in the honest estimates.") + (f" Wrote {out}." if out else ""))
    if sent:
        console.print(f"Annotated {sent['annotated']} spans in Phoenix project {sent['project']} at {sent['url']} "
                      f"(annotation 'improver review queue')" + (f"; no span found for {', '.join(sent['not_found'])}"
                                                                 if sent["not_found"] else "."))


def write_picks(path: Path, picks, scan=None, decisions: dict[str, dict] | None = None) -> None:
    """The picks as a labelling tool imports them: each with its case and the agent's reasoning when
    ``decisions`` (``queue.picked_decisions``) has them; in a CSV, a column per case field."""
    rows = [p.as_dict() for p in picks]
    rows = [dict(row, **(decisions or {}).get(row["session_id"], {})) for row in rows]
    if scan is not None:  # the project's leak scan: no unmasked personal data in the queue file
        scan.check("".join(json.dumps(r) + "\n" for r in rows), f"the review queue {path}")
    if path.suffix == ".csv":
        rows = [_flat(row) for row in rows]
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for r in rows for k in r)) or ["session_id"])
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        raise ImproverError(f"--out {path}: use a .jsonl or .csv file name")


def _flat(row: dict) -> dict:
    """A CSV row: the case's fields as ``case.<field>`` columns (a nested value as its JSON)."""
    case = row.pop("case", None)
    for key, value in (case or {}).items():
        row[f"case.{key}"] = json.dumps(value) if isinstance(value, (dict, list)) else value
    return row


@app.command("flag")
def flag_command(project: Path = ProjectOption, since: Optional[str] = typer.Option(None, help="Only decisions at or after this timestamp."),
                 experiment: Optional[str] = typer.Option(None, "--experiment", help="Experiment whose rules to apply "
                                                          "(default: the accepted one, else the best scored)."),
                 min_precision: float = typer.Option(0.0, "--min-precision", min=0.0, max=1.0,
                                                     help="Only overrides predicted by rules at least this precise."),
                 as_json: bool = typer.Option(False, "--json")):
    """Unreviewed decisions the accepted config would decide differently: predicted overrides.

    Exit code 0 when there are none, 1 when some are listed (for scheduled jobs), 2 on errors."""
    from improver.flag import as_dicts, flag

    with workspace(project, quiet=True) as ws:
        reference, flags = flag(ws, since, experiment, min_precision)
    if as_json:
        console.print_json(json.dumps({"experiment": reference, "flags": as_dicts(flags)}))
    elif not flags:
        console.print(f"No predicted overrides: {reference}'s rules"
                      + (f" at least {min_precision:.0%} precise" if min_precision else "")
                      + " agree with every unreviewed decision" + (f" at or after {since}." if since else "."))
    else:
        from rich.table import Table  # imported here: `improver --help` stays fast
        table = Table(title=f"{len(flags)} predicted overrides (rules of {reference})")
        for column in ("session", "agent", "humans likely", "rule", "precision", "evidence"):
            table.add_column(column)
        for f in flags:
            table.add_row(f.session_id, f.agent_decision, f.predicted, f"{f.rule}: {f.condition}",
                          "–" if f.precision is None else f"{f.precision:.0%} ({f.precision_kind})",
                          ", ".join(f.evidence_sessions[:3]))
        console.print(table)
    raise typer.Exit(1 if flags else 0)


@app.command("precedents")
def precedents_command(project: Path = ProjectOption, as_json: bool = typer.Option(False, "--json")):
    """Precedents over time: a stable id each, status (new, growing, handled, regressed) and overrides per week."""
    from improver.precedents import track

    with workspace(project, quiet=True) as ws:
        registry = track(ws)
    if as_json:
        console.print_json(json.dumps(registry))
        return
    from rich.table import Table  # imported here: `improver --help` stays fast
    table = Table(title=f"Precedents ({len(registry['precedents'])}), observed {registry['observations'][-1]['week']}")
    for column in ("id", "precedent", "decision", "status", "overrides", "per week", "condition"):
        table.add_column(column)
    for entry in registry["precedents"]:
        weekly = " ".join(f"{week[-3:]}:{n}" for week, n in entry.get("weekly", {}).items())
        table.add_row(entry["id"], entry["name"], entry["decision"], entry["status"],
                      str(entry["history"][-1]["overrides"]), weekly, entry.get("description", ""))
    console.print(table)
