"""The loop on a tiny non-procurement project: mine, propose, rerun, score, cycle."""
import json
import sys

import yaml
from typer.testing import CliRunner

from conftest import write_jsonl
from improver.cli import app
from improver.cycle import run_cycles
from improver.runtime import load_overlay
from improver.workspace import Workspace


def ingested(project):
    ws = Workspace(project)
    ws.ingest(str(project / "traces.jsonl"))
    return ws


def test_mining_explains_the_tagged_precedent_with_a_compact_condition(tiny_project):
    ws = ingested(tiny_project)
    result = ws.mine(ws.baseline())
    (precedent,) = [p for p in result.precedents if p.name == "login-outage"]
    assert precedent.condition == {"product": {"eq": "login"}}
    assert precedent.decision == "escalate" and precedent.precision == 1.0
    assert precedent.support >= 3 and len(precedent.evidence_sessions) >= 3
    assert all(ws.split(s) == "train" for s in precedent.evidence_sessions)


def test_a_cycle_writes_a_complete_experiment_that_the_target_applies(tiny_project):
    ws = ingested(tiny_project)
    state = run_cycles(ws, max_cycles=2)
    baseline, best = ws.experiments.get(state["history"][0]["experiment"]), ws.experiments.get(state["parent"])
    assert {p.name for p in best.path.iterdir()} >= {"manifest.yaml", "patch.diff", "config", "report.md", "results.json",
                                                     "decisions.jsonl"}
    manifest = yaml.safe_load((best.path / "manifest.yaml").read_text())
    assert manifest["parent"] == baseline.id and manifest["schema_version"] == 1
    assert manifest["proposals"][0]["evidence_sessions"]
    assert "+++ b/learned_rules.yaml" in (best.path / "patch.diff").read_text()
    assert load_overlay(best.config_dir).match({"product": "login", "minutes": 5}).decision == "escalate"
    results = json.loads((best.path / "results.json").read_text())
    assert results["heldout"]["agreement"] == 1.0 > baseline.results["heldout"]["agreement"]
    assert results["per_proposal"]["login-outage"]["train"] > 0
    assert results["regressions"] == []
    assert state["history"][-1]["kept"] == 1


def test_a_second_cycle_stops_when_nothing_is_left_to_learn(tiny_project):
    ws = ingested(tiny_project)
    state = run_cycles(ws, max_cycles=4)
    assert len(state["history"]) == 2 and "no precedent" in state["stop_reason"]


def test_a_target_that_raises_gets_error_decisions_and_the_run_goes_on(tiny_project):
    rows = [json.loads(line) for line in (tiny_project / "traces.jsonl").read_text().splitlines()]
    rows[0]["case"]["boom"] = True
    write_jsonl(tiny_project / "traces.jsonl", rows)
    ws = ingested(tiny_project)
    results = ws.score(ws.baseline())
    assert results["errors"]["count"] == 1 and "RuntimeError: cannot triage" in results["errors"]["examples"][0]
    assert results["all"]["sessions"] == 80


def test_command_targets_read_jsonl_on_stdin(tiny_project):
    (tiny_project / "cmd_agent.py").write_text(
        "import json, sys\nfor line in sys.stdin:\n    case = json.loads(line)\n"
        "    print(json.dumps({'decision': 'escalate' if case['minutes'] > 30 else 'resolve', 'reasoning': sys.executable}))\n")
    (tiny_project / "improver.yaml").write_text(
        "target:\n  command: ['{python}', cmd_agent.py, '{config_dir}']\n  config: config\n")
    ws = ingested(tiny_project)
    results = ws.score(ws.baseline())
    recorded = sum(s.agent_decision == s.human_decision for s in ws.sessions) / len(ws.sessions)
    assert results["errors"]["count"] == 0 and results["all"]["agreement"] == recorded < 1
    decided = [json.loads(line) for line in (ws.baseline().path / "decisions.jsonl").read_text().splitlines()]
    assert {d["reasoning"] for d in decided} == {sys.executable}  # {python}: the interpreter improver runs in


def test_an_interrupted_cycle_resumes_without_repeating_experiments(tiny_project, monkeypatch):
    ws = ingested(tiny_project)
    calls = {"n": 0}
    original = Workspace.score

    def crash_on_candidate(self, experiment, leave_one_out=True):
        if experiment.manifest.kind == "cycle" and calls["n"] == 0:
            calls["n"] += 1
            raise KeyboardInterrupt("power cut")
        return original(self, experiment, leave_one_out)

    monkeypatch.setattr(Workspace, "score", crash_on_candidate)
    try:
        run_cycles(ws, max_cycles=1)
    except KeyboardInterrupt:
        pass
    made = ws.experiments.ids()
    state = run_cycles(Workspace(tiny_project), max_cycles=1, resume=True)
    assert ws.experiments.ids() == made  # nothing made twice
    assert state["history"][-1]["heldout"] == 1.0


def test_reviews_arriving_after_a_cycle_get_a_new_baseline_and_old_experiments_still_decide(tiny_project):
    lines = (tiny_project / "traces.jsonl").read_text().splitlines()
    (tiny_project / "first.jsonl").write_text("\n".join(lines[:80]) + "\n")
    (tiny_project / "later.jsonl").write_text("\n".join(lines[80:]) + "\n")
    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "first.jsonl"))
    first = run_cycles(ws, max_cycles=1)
    ws.ingest(str(tiny_project / "later.jsonl"))
    second = run_cycles(ws, max_cycles=1)
    old, new = first["history"][0]["experiment"], second["history"][0]["experiment"]
    assert old != new
    assert ws.experiments.get(new).results["all"]["sessions"] == 80 > ws.experiments.get(old).results["all"]["sessions"]
    assert len(ws.run(ws.experiments.get(first["parent"]))) == 80, "an older experiment decides the new sessions too"


def test_a_cycle_run_again_on_unchanged_reviews_makes_no_new_experiment(tiny_project):
    """The second run mines the same proposals from the same baseline: the experiment that holds
    that config stands, with its decisions and scores, instead of a copy of it."""
    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    first = run_cycles(ws, max_cycles=1)
    made = ws.experiments.ids()
    second = run_cycles(Workspace(tiny_project), max_cycles=1)
    assert Workspace(tiny_project).experiments.ids() == made
    assert [row["experiment"] for row in second["history"]] == [row["experiment"] for row in first["history"]]
    assert second["history"] == first["history"]


def test_a_cycle_run_again_on_unchanged_reviews_does_not_mine_them_again(tiny_project, monkeypatch):
    """Mining the same sessions from the same parent under the same settings makes the same experiment,
    so the second run takes it without mining; a changed setting (or review) mines again."""
    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    first = run_cycles(ws, max_cycles=1)
    mined = []
    original = Workspace.cross_validate
    monkeypatch.setattr(Workspace, "cross_validate", lambda self, parent: mined.append(parent.id) or original(self, parent))
    second = run_cycles(Workspace(tiny_project), max_cycles=1)
    assert mined == [] and second["history"] == first["history"]
    shown = CliRunner().invoke(app, ["cycle", "--max-cycles", "1", "--project", str(tiny_project), "--json"])
    assert shown.exit_code == 0 and mined == [], shown.output
    assert any(n.startswith("no new experiment") for n in json.loads(shown.output)["notices"]), "the CLI says so"
    settings = tiny_project / "improver.yaml"
    settings.write_text(settings.read_text() + "min_evidence: 4\n")
    run_cycles(Workspace(tiny_project), max_cycles=1)
    assert mined == [first["history"][0]["experiment"]], "another evidence minimum: mined again"

def test_a_workspace_that_ingests_changed_notes_mines_them_in_its_next_cycle(tiny_project, monkeypatch):
    """New notes on the same decisions keep the baseline, but not the mining: a long-lived workspace
    (the MCP server's) that ingests them mines again instead of taking the experiment mined before."""
    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    run_cycles(ws, max_cycles=1)
    renamed = [line.replace('"login-outage"', '"auth-outage"') for line in (tiny_project / "traces.jsonl").read_text().splitlines()
               if '"review"' in line and "login-outage" in line]
    assert renamed
    (tiny_project / "renamed.jsonl").write_text("\n".join(renamed) + "\n")
    mined = []
    original = Workspace.cross_validate
    monkeypatch.setattr(Workspace, "cross_validate", lambda self, parent: mined.append(parent.id) or original(self, parent))
    ws.ingest(str(tiny_project / "renamed.jsonl"))
    run_cycles(ws, max_cycles=1)
    assert len(mined) == 1, "the renamed precedent's notes were mined"


def test_scores_count_each_session_once_in_its_split_against_the_parent():
    """Every figure of ``score`` is what counting the sessions one by one gives."""
    import random
    from collections import Counter

    from improver.models import ReviewedSession
    from improver.scoring import score, split_of

    rng = random.Random(7)
    labels = ["approve", "reject", "flag-for-review"]
    sessions = [ReviewedSession(session_id=f"s{i:04d}", case={}, agent_decision="approve", human_decision=rng.choice(labels))
                for i in range(600)]
    parent = {s.session_id: rng.choice(labels) for s in sessions}
    decisions = {s.session_id: rng.choice(labels + ["error"]) for s in sessions[:-5]}  # the last five never decided
    results = score(sessions, decisions, 0.3, parent)
    now = {s.session_id: decisions.get(s.session_id, "error") for s in sessions}
    for name in ("train", "heldout", "all"):
        chosen = [s for s in sessions if name == "all" or split_of(s.session_id, 0.3) == name]
        agree = sum(now[s.session_id] == s.human_decision for s in chosen)
        before = sum(parent[s.session_id] == s.human_decision for s in chosen)
        assert (results[name]["sessions"], results[name]["agree"]) == (len(chosen), agree)
        assert results["change"][name] == round(agree / len(chosen) - before / len(chosen), 4)
    assert 0 < results["heldout"]["sessions"] < 600
    pairs = Counter((now[s.session_id], s.human_decision) for s in sessions)
    assert {(row["agent"], row["human"]): row["count"] for row in results["confusion"] if row["count"]} == pairs
    assert [r["session_id"] for r in results["regressions"]] == [
        s.session_id for s in sessions if parent[s.session_id] == s.human_decision != now[s.session_id]]
    assert results["fixed"] == sum(parent[s.session_id] != now[s.session_id] == s.human_decision for s in sessions)
    assert results["changed"] == sum(parent[s.session_id] != now[s.session_id] for s in sessions)
    assert results["errors"]["count"] == sum(v == "error" for v in now.values())
    no_holdout = score(sessions, decisions, 0.0)
    assert no_holdout["heldout"]["sessions"] == 0 and no_holdout["train"] == results["all"]
