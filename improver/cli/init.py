"""``improver init``: scaffold a project (improver.yaml, config/, an agent stub, .gitignore)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from improver.cli.app import app, console
from improver.errors import ImproverError


def parse_bands(values: list[str]) -> dict[str, list[float]]:
    """``amount=5000,50000`` options as {field: cuts}."""
    bands = {}
    for value in values:
        name, _, cuts = value.partition("=")
        try:
            bands[name.strip()] = [float(c) for c in cuts.split(",") if c.strip()]
        except ValueError:
            raise ImproverError(f"--band {value!r}: give FIELD=CUT,CUT, e.g. amount=5000,50000") from None
        if not name.strip() or not bands[name.strip()]:
            raise ImproverError(f"--band {value!r}: give FIELD=CUT,CUT, e.g. amount=5000,50000")
    return bands


def split_list(value: Optional[str]) -> Optional[list[str]]:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


@app.command()
def init(folder: Path = typer.Argument(Path("."), help="Project folder (made if missing)."),
         traces: Optional[Path] = typer.Option(None, "--traces", help="A trace file: propose entity fields, bands and "
                                                                       "decision labels from its data."),
         agent: str = typer.Option("callable", help="'callable' (a decide() function) or 'command' (a program "
                                                    "reading cases as JSONL)."),
         entity_fields: Optional[str] = typer.Option(None, help="Comma-separated case fields that name entities."),
         band: list[str] = typer.Option([], help="Numeric bands, FIELD=CUT,CUT (repeat for more fields)."),
         decisions: Optional[str] = typer.Option(None, help="Comma-separated decision labels."),
         as_json: bool = typer.Option(False, "--json")):
    """Make a project: improver.yaml, config/, an agent stub that reads the learned rules, .gitignore."""
    from improver.init import AGENT_FILE, init_project

    result = init_project(folder, agent=agent, entity_fields=split_list(entity_fields),
                          bands=parse_bands(band) if band else None, decisions=split_list(decisions), traces=traces)
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
        return
    console.print(f"Made an improver project in {result.folder}: wrote {', '.join(result.written)}"
                  + (f"; kept your {', '.join(result.kept)}" if result.kept else "") + ".")
    guess = result.guess
    if guess:
        console.print(f"From {guess.sessions} sessions in {traces}: entity fields "
                      f"{', '.join(guess.entity_fields) or 'none'}; bands "
                      f"{', '.join(f'{k} {v}' for k, v in guess.bands.items()) or 'none'}; decisions "
                      f"{', '.join(guess.decisions)}. Edit improver.yaml to change them.")
    console.print(f"Next: put your agent into {AGENT_FILE} (keep its overlay lines), then "
                  f"`improver ingest {traces or 'TRACES.jsonl'}` and `improver cycle`.")
