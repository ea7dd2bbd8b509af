"""`improver review`: accepted proposals ship in a child experiment that is rerun and rescored."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from improver.cli import review as cli_pr
from improver.cli import app
from improver.errors import ExperimentError
from improver.experiments import read_tree
from improver.propose import render_config
from improver.review import review
from improver.workspace import Workspace
from pr_helpers import project, scored_project  # noqa: F401 (fixtures)

CYCLE = "0002-cycle-1"


def proposal_ids(ws: Workspace, experiment_id: str = CYCLE) -> list[str]:
    return [p.id for p in ws.experiments.get(experiment_id).manifest.proposals]


def test_review_ships_the_accepted_proposals_in_a_rerun_rescored_child(project):
    ws = Workspace(project)
    ids = proposal_ids(ws)
    accepted, rejected = ids[:2], ids[2:]
    outcome = review(ws, CYCLE, accepted, rejected)

    child = ws.experiments.get(outcome.shipped)
    original = ws.experiments.get(CYCLE)
    assert child.manifest.kind == "review" and child.manifest.mining["derived_from"] == CYCLE
    assert [p.id for p in child.manifest.proposals] == accepted
    parent = ws.experiments.get(original.manifest.parent)
    kept = [p for p in original.manifest.proposals if p.id in accepted]
    assert read_tree(child.config_dir) == render_config(read_tree(parent.config_dir), kept, original.manifest.guidance,
                                                          original.manifest.cycle)
    assert child.decisions is not None and len(child.decisions) == len(ws.sessions)
    assert outcome.results == child.results and set(child.results["per_proposal"]) == set(accepted)
    assert child.status == "accepted" and original.status == "rejected"


def test_review_accepting_everything_accepts_the_experiment_itself(project):
    ws = Workspace(project)
    before = ws.experiments.ids()
    outcome = review(ws, CYCLE, proposal_ids(ws), [])
    assert outcome.shipped == CYCLE and ws.experiments.ids() == before
    assert ws.experiments.get(CYCLE).status == "accepted"


def test_review_rejecting_everything_ships_nothing(project):
    ws = Workspace(project)
    before = ws.experiments.ids()
    outcome = review(ws, CYCLE, [], proposal_ids(ws))
    assert outcome.shipped is None and ws.experiments.ids() == before
    assert ws.experiments.get(CYCLE).status == "rejected"


@pytest.mark.parametrize("case, message", [("undecided", "no decision on"), ("unknown", "has no proposal nope"),
                                           ("both", "both accepted and rejected")])
def test_review_refuses_incomplete_or_contradictory_decisions(project, case, message):
    ws = Workspace(project)
    ids = proposal_ids(ws)
    accept, reject = {"undecided": (ids[:1], []), "unknown": (ids + ["nope"], []),
                      "both": (ids, ids[:1])}[case]
    before = ws.experiments.ids()
    with pytest.raises(ExperimentError, match=message):
        review(ws, CYCLE, accept, reject)
    assert ws.experiments.ids() == before and ws.experiments.get(CYCLE).status == "proposed"


def test_review_command_takes_comma_lists_and_rejects_the_others(project):
    ws = Workspace(project)
    first, second = proposal_ids(ws)[:2]
    result = CliRunner().invoke(app, ["review", CYCLE, "--project", str(project), "--accept", f"{first},{second}",
                                      "--reject-others"])
    assert result.exit_code == 0, result.output
    shipped = ws.experiments.ids()[-1]
    assert f"Ships as {shipped}" in result.output
    assert proposal_ids(ws, shipped) == [first, second]


def test_review_command_prompts_for_each_undecided_proposal(project, monkeypatch):
    monkeypatch.setattr(cli_pr, "interactive", lambda: True)
    ws = Workspace(project)
    ids = proposal_ids(ws)
    answers = "".join("y\n" if i % 2 == 0 else "n\n" for i in range(len(ids) - 1))
    result = CliRunner().invoke(app, ["review", CYCLE, "--project", str(project), "--reject", ids[-1]], input=answers)
    assert result.exit_code == 0, result.output
    assert result.output.count("Accept?") == len(ids) - 1
    assert proposal_ids(ws, ws.experiments.ids()[-1]) == [i for n, i in enumerate(ids[:-1]) if n % 2 == 0]
