"""`improver log` (the experiment tree with scores and status) and `improver diff A B`."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from improver.cli import app
from improver.experiments import read_tree, unified_diff
from improver.review import diff, log, review
from improver.workspace import Workspace
from pr_helpers import project, scored_project  # noqa: F401 (fixtures)


def test_log_lists_parents_before_children_with_scores_and_status(project):
    ws = Workspace(project)
    cycle = ws.experiments.get("0002-cycle-1")
    outcome = review(ws, cycle.id, [cycle.manifest.proposals[0].id], [p.id for p in cycle.manifest.proposals[1:]])
    rows = log(ws)

    assert [r["experiment"] for r in rows] == ws.experiments.ids()
    by_id = {r["experiment"]: r for r in rows}
    assert by_id["0001-baseline"]["depth"] == 0 and by_id[outcome.shipped]["depth"] == 1
    assert by_id[outcome.shipped]["parent"] == "0001-baseline" and by_id[outcome.shipped]["derived_from"] == cycle.id
    assert by_id[outcome.shipped]["status"] == "accepted" and by_id[cycle.id]["status"] == "rejected"
    for row in rows:
        results = ws.experiments.get(row["experiment"]).results
        assert (row["train"], row["heldout"]) == (results["train"]["agreement"], results["heldout"]["agreement"])


def test_log_command_prints_a_table_and_json(project):
    table = CliRunner().invoke(app, ["log", "--project", str(project)])
    assert table.exit_code == 0 and "└─ 0002-cycle-1" in table.output
    as_json = CliRunner().invoke(app, ["log", "--project", str(project), "--json"])
    assert [r["experiment"] for r in json.loads(as_json.output)] == Workspace(project).experiments.ids()


def test_diff_shows_config_changes_and_each_changed_decision_against_the_human(project):
    ws = Workspace(project)
    a, b = ws.experiments.get("0001-baseline"), ws.experiments.get("0002-cycle-1")
    changes = diff(ws, a.id, b.id)

    assert changes["config_diff"] == unified_diff(read_tree(a.config_dir), read_tree(b.config_dir)) != ""
    humans = {s.session_id: s.human_decision for s in ws.sessions}
    expected = {sid for sid in humans if a.decisions[sid]["decision"] != b.decisions[sid]["decision"]}
    assert {c["session_id"] for c in changes["sessions"]} == expected
    for c in changes["sessions"]:
        assert c["agrees_now"] == (c["now"] == humans[c["session_id"]])
        assert c["agreed_before"] == (c["before"] == humans[c["session_id"]])
    assert changes["fixed"] - changes["broken"] == b.results["all"]["agree"] - a.results["all"]["agree"]


def test_diff_of_an_experiment_with_itself_is_empty(project):
    changes = diff(Workspace(project), "0002-cycle-1", "0002-cycle-1")
    assert changes["config_diff"] == "" and changes["sessions"] == []


def test_diff_command_shows_whose_decision_changed(project):
    result = CliRunner().invoke(app, ["diff", "0001-baseline", "0002-cycle-1", "--project", str(project)])
    assert result.exit_code == 0, result.output
    assert "+++ b/learned_rules.yaml" in result.output and "fixed" in result.output


def test_log_marks_an_experiment_merged_once_its_config_is_the_targets(project):
    import shutil

    ws = Workspace(project)
    cycle = ws.experiments.get("0002-cycle-1")
    assert {r["experiment"]: r["status"] for r in log(ws)}[cycle.id] == "proposed"
    shutil.rmtree(ws.project.base_config_dir)
    shutil.copytree(cycle.config_dir, ws.project.base_config_dir)  # what merging its PR does to the config
    statuses = {r["experiment"]: r["status"] for r in log(ws)}
    assert statuses[cycle.id] == "merged" and statuses["0001-baseline"] == "proposed"
