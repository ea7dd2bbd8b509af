"""``improver push``: an experiment's results back to where the traces came from (over ``improver.push``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from improver.cli.app import app, ProjectOption, console, pct, workspace


@app.command("push")
def push_command(target: str = typer.Argument(..., help="phoenix+http://HOST:PORT (or phoenix+https://...)."),
                 experiment_id: Optional[str] = typer.Argument(None, help="Experiment (default: the last accepted, "
                                                                          "else the best scored)."),
                 project: Path = ProjectOption,
                 dataset: Optional[str] = typer.Option(None, help="Dataset name in Phoenix "
                                                                  "(default: 'improver <project> <experiment>').")):
    """Push an experiment to Phoenix: the reviewed sessions as a dataset, its decisions as an experiment run."""
    from improver.push import push_to_phoenix
    from improver.report import default_experiment

    with workspace(project) as ws:
        experiment = ws.experiments.get(experiment_id) if experiment_id else default_experiment(ws)
        outcome = push_to_phoenix(ws, target, experiment, dataset)
    console.print(f"Pushed {experiment.id} to Phoenix: dataset {outcome.dataset_name!r} ({outcome.examples} reviewed "
                  f"sessions, id {outcome.dataset_id}) and experiment {outcome.experiment_id} (agreement "
                  f"{pct(outcome.agreement)}). See {outcome.url}", markup=False, highlight=False, soft_wrap=True)
