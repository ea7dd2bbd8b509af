"""Cross-validated mining: stable folds, out-of-fold scores, stable proposals, a locked test split."""
import hashlib

import numpy as np

from improver import crossval
from improver.crossval import FoldRun
from improver.cycle import run_cycles
from improver.experiments import Proposal
from improver.workspace import Workspace


def ingested(project):
    ws = Workspace(project)
    ws.ingest(str(project / "traces.jsonl"))
    return ws


def proposal(name, when, decision="escalate"):
    return Proposal(id=name, precedent=name, source="tag", decision=decision, when=when, condition=str(when),
                    reason="", support=3, covered=3, precision=1.0, evidence_sessions=[])


def test_folds_are_stable_by_session_id_and_balanced():
    ids = [f"S{i:04d}" for i in range(1000)]
    folds = crossval.folds_of(ids, 5).tolist()
    assert folds == crossval.folds_of(list(reversed(ids)), 5).tolist()[::-1]
    assert all(150 < folds.count(k) < 250 for k in range(5))
    digest = hashlib.sha256(("improver-fold/" + ids[0]).encode()).digest()
    assert folds[0] == int.from_bytes(digest[:8], "big") % 5, "the fold of an id is its hash's, whatever ids come with it"


def test_a_precedent_most_folds_find_without_losing_out_of_fold_is_stable():
    refit = [proposal("login", {"product": {"eq": "login"}}), proposal("rare", {"product": {"eq": "api"}}),
             proposal("harmful", {"product": {"eq": "search"}})]
    runs = []
    for fold in range(5):
        found = [proposal("login", {"product": {"eq": "login"}}), proposal(f"renamed-{fold}", {"product": {"eq": "search"}})]
        if fold < 2:
            found.append(proposal("rare", {"product": {"eq": "api"}}))
        effects = {"login": 2, f"renamed-{fold}": -1, "rare": 5}
        runs.append(FoldRun(fold, np.arange(3), None, found, effects))
    evidence = crossval.select(refit, runs, 5)
    assert evidence["login"]["stable"] and evidence["login"]["found"] == 5 and evidence["login"]["oof_effect"] == 10
    assert not evidence["rare"]["stable"]  # found by 2 of 5 folds, however large its effect there
    assert evidence["harmful"]["found"] == 5  # matched by condition across renamed clusters
    assert not evidence["harmful"]["stable"] and evidence["harmful"]["oof_effect"] == -5


def test_every_session_is_scored_by_rules_mined_without_it(tiny_project):
    ws = ingested(tiny_project)
    state = run_cycles(ws, max_cycles=2)
    best = ws.experiments.get(state["parent"])
    cv = best.results["cv"]
    train = [s for s in ws.sessions if ws.split(s.session_id) == "train"]
    assert cv["mode"] == "cv" and cv["sessions"] == len(train) and cv["folds"] == 5
    assert cv["low"] <= cv["agreement"] <= cv["high"] and cv["agreement"] == 1.0
    runs = best.manifest.mining["cv"]["fold_runs"]
    assert sum(r["scored_sessions"] for r in runs) == len(train)
    assert all(r["mined_sessions"] + r["scored_sessions"] == len(train) for r in runs)
    (login,) = best.manifest.proposals
    assert login.cv["found"] == 5 and login.cv["oof_effect"] > 0 and len(login.cv["per_fold"]) == 5
    assert all(r["proposals"][0]["matches"] == login.id for r in runs)


def test_the_locked_test_split_is_never_mined_and_is_reported_apart(tiny_project):
    ws = ingested(tiny_project)
    state = run_cycles(ws, max_cycles=2)
    best = ws.experiments.get(state["parent"])
    test = {s.session_id for s in ws.sessions if ws.split(s.session_id) == "heldout"}
    assert test and best.results["heldout"]["sessions"] == len(test)
    assert best.results["cv"]["sessions"] + len(test) == len(ws.sessions)
    assert not test & set(best.manifest.proposals[0].evidence_sessions)


def test_only_stable_precedents_are_proposed_with_their_fold_evidence(tiny_project):
    ws = ingested(tiny_project)
    cv = ws.cross_validate(ws.baseline())
    assert cv.stable("login-outage")
    experiment = ws.propose(ws.baseline(), cv.result, 1, cv=cv)
    assert experiment.manifest.proposals[0].cv == cv.evidence["login-outage"]
    cv.evidence["login-outage"]["stable"] = False  # as if most folds had not found it
    assert ws.propose(ws.baseline(), cv.result, 2, cv=cv) is None


def test_large_projects_switch_to_one_validation_split(tiny_project):
    (tiny_project / "improver.yaml").write_text((tiny_project / "improver.yaml").read_text() + "cv_max_sessions: 50\n")
    ws = ingested(tiny_project)
    state = run_cycles(ws, max_cycles=2)
    cv = ws.experiments.get(state["parent"]).results["cv"]
    train = [s.session_id for s in ws.sessions if ws.split(s.session_id) == "train"]
    validation = [i for i, inside in zip(train, crossval.in_validation(train, ws.project.config.validation)) if inside]
    assert cv["mode"] == "validation" and cv["folds"] == 1 and cv["sessions"] == len(validation) > 0


def test_a_kept_proposal_that_only_helped_behind_a_dropped_one_is_not_shipped():
    # mining ordered [exact, broad]: "exact" decided rows 0-3 (approve) before "broad" (escalate)
    # could; stability selection dropped "exact". Shipped alone, ahead of the parent's decisions,
    # "broad" would turn rows 0-3 the parent got right into disagreements: it is not shipped.
    human = np.array(["approve"] * 4 + ["escalate"] * 2 + ["approve"] * 4, dtype=object)
    parent = np.array(["approve"] * 4 + ["approve"] * 2 + ["approve"] * 4, dtype=object)
    broad = np.array([True] * 6 + [False] * 4)
    useful = np.array([False] * 4 + [True] * 2 + [False] * 4)
    kept = crossval.deployable([proposal("broad", {}), proposal("useful", {})], np.stack([broad, useful]), parent, human)
    assert [p.id for p in kept] == ["useful"]


def test_propose_drops_a_stable_precedent_that_loses_agreement_as_it_ships(tiny_project):
    # a stable precedent whose rule, shipped ahead of the parent, turns billing tickets the
    # parent resolves correctly into escalations: propose ships the login rule without it
    from improver.mining import Precedent

    ws = ingested(tiny_project)
    cv = ws.cross_validate(ws.baseline())
    harmful = Precedent(name="billing-escalate", source="tag", decision="escalate", group_size=5, support=5,
                        condition={"product": {"eq": "billing"}}, covered=15, precision=0.4, expected_gain=1)
    cv.result.precedents.append(harmful)
    cv.evidence["billing-escalate"] = {"folds": 5, "found": 5, "oof_effect": 0, "stable": True,
                                      "per_fold": [{"fold": k, "found": True, "rule": None, "effect": 0} for k in range(5)]}
    experiment = ws.propose(ws.baseline(), cv.result, 1, cv=cv)
    assert [p.precedent for p in experiment.manifest.proposals] == ["login-outage"]


def test_a_groups_second_rule_is_found_by_a_fold_that_explains_the_group_with_one_rule():
    # the refit explains panic buys with two rules (Marketing, then Sales); a fold with one rule
    # for both finds each of them; a third refit rule of the group on other sessions is not found
    rows = {"panic": np.array([1, 1, 0, 0, 0, 0, 0, 0], bool), "panic-2": np.array([0, 0, 1, 1, 0, 0, 0, 0], bool),
            "panic-3": np.array([0, 0, 0, 0, 1, 1, 0, 0], bool), "both": np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)}
    refit = [proposal("panic", {"dept": {"eq": "M"}}), proposal("panic-2", {"dept": {"eq": "S"}}),
             proposal("panic-3", {"dept": {"eq": "E"}})]
    fold_rule = proposal("panic", {"dept": {"in": ["M", "S"]}})
    runs = [FoldRun(fold, np.arange(2), None, [fold_rule], {"panic": 1}) for fold in range(5)]
    evidence = crossval.select(refit, runs, 5, rows=lambda p: rows["both" if p is fold_rule else p.precedent])
    assert evidence["panic"]["stable"] and evidence["panic-2"]["stable"] and evidence["panic-2"]["found"] == 5
    assert evidence["panic-2"]["per_fold"][0]["rule"] == "panic" and evidence["panic-2"]["oof_effect"] == 5
    assert evidence["panic-3"]["found"] == 0 and not evidence["panic-3"]["stable"]
    # a rule of the same decision from another group is not the same precedent
    other = proposal("cfo", {"dept": {"in": ["M", "S"]}})
    runs = [FoldRun(fold, np.arange(2), None, [other], {"cfo": 1}) for fold in range(5)]
    evidence = crossval.select(refit, runs, 5, rows=lambda p: rows["both" if p is other else p.precedent])
    assert evidence["panic-2"]["found"] == 0


def test_a_group_mining_named_from_its_notes_is_found_by_a_fold_rule_of_another_name_on_its_sessions():
    # text clusters and residual patterns are named from their notes, so each fold names them anew:
    # the fold's "engineering-off-sign" deciding the refit's "add-engineering-estimate" sessions finds it
    rows = {"add-engineering-estimate": np.array([1, 1, 1, 0, 0, 0], bool),
            "engineering-off-sign": np.array([1, 1, 1, 1, 0, 0], bool),
            "approve-budget-here": np.array([0, 0, 0, 0, 1, 1], bool)}
    refit = [proposal("add-engineering-estimate", {"amount": {"ge": 38000}}, "flag").model_copy(update={"source": "text-cluster"}),
             proposal("approve-budget-here", {"amount": {"ge": 60000}}, "approve").model_copy(update={"source": "pattern"})]
    fold_rule = proposal("engineering-off-sign", {"amount": {"ge": 39000}}, "flag").model_copy(update={"source": "text-cluster"})
    runs = [FoldRun(fold, np.arange(2), None, [fold_rule], {"engineering-off-sign": 1}) for fold in range(5)]
    evidence = crossval.select(refit, runs, 5, rows=lambda p: rows[p.precedent])
    assert evidence["add-engineering-estimate"]["found"] == 5 and evidence["add-engineering-estimate"]["stable"]
    assert evidence["approve-budget-here"]["found"] == 0  # another decision, other sessions
