"""The review queue, predicted overrides, precedents over time, and honest estimates from chosen reviews."""
import csv
import json
import sqlite3
from collections import Counter

import pytest
from typer.testing import CliRunner

from conftest import write_jsonl
from improver import review as reviewing
from improver.cli import app
from improver.cycle import run_cycles
from improver.errors import ImproverError
from improver.experiments import read_tree
from improver.precedents import track
from improver.flag import flag
from improver.queue import (MAX_PER_KEY, balanced_sample, build_queue, difference_estimate, learned_precedents, model_assisted,
                            next_batch, record, reference_experiment, sampled_agreement, spread_ranks)
from improver.models import ReviewedSession
from improver.workspace import Workspace

PRODUCTS = ["billing", "login", "search", "api"]


def ticket(i: int, product: str, minutes: int) -> dict:
    text = "customer cannot log in after password reset" if product == "login" else "general question about invoices"
    return {"ticket": f"T{i:04d}", "product": product, "minutes": minutes, "text": text}


def decision(case: dict, ts: str = "2026-11-02T09:00:00Z") -> dict:
    return {"type": "decision", "session_id": case["ticket"], "case": case,
            "decision": "escalate" if case["minutes"] > 30 else "resolve", "confidence": "high", "ts": ts}


def review(case: dict, ts: str = "2026-11-02T10:00:00Z", api_rule: bool = False) -> dict:
    agent = "escalate" if case["minutes"] > 30 else "resolve"
    human, precedent, why = agent, None, "Agree."
    if case["product"] == "login":
        human, precedent, why = "escalate", "login-outage", "Login problems go to the auth team during the outage."
    elif api_rule and case["product"] == "api":
        human, precedent, why = "escalate", "api-deprecation", "API tickets go to platform while v1 is retired."
    return {"type": "review", "session_id": case["ticket"], "reviewer": "sam", "decision": human, "reasoning": why,
            "precedent": precedent, "ts": ts}


@pytest.fixture
def live_project(tiny_project):
    """The tiny project after a cycle, with 200 unreviewed decisions of new traffic (10 on a new product)."""
    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    run_cycles(ws, max_cycles=1)
    traffic = [decision(ticket(1000 + i, PRODUCTS[i % 4] if i < 190 else "mobile", 5 + (i * 11) % 50)) for i in range(200)]
    write_jsonl(tiny_project / "traffic.jsonl", traffic)
    ws.ingest(str(tiny_project / "traffic.jsonl"))
    return tiny_project


def test_queue_ranks_predicted_overrides_first_and_keeps_a_random_share(live_project):
    ws = Workspace(live_project)
    queue = build_queue(ws, n=20, random_share=0.25, seed=3)
    assert len(queue.picks) == 20 and queue.pending == 200
    ranked = [p for p in queue.picks if p.picked_by != "random"]
    randoms = [p for p in queue.picks if p.picked_by == "random"]
    # at least the stated share is random; slots no reason fills under the per-batch caps are random too
    assert len(randoms) >= 5 and len(randoms) + len(ranked) == 20
    assert all(p.probability == pytest.approx(len(randoms) / (200 - len(ranked))) for p in randoms)
    assert all(p.probability == 1.0 for p in ranked)
    overrides = [p for p in ranked if p.picked_by == "predicted-override"]
    assert overrides and all(p.predicted == "escalate" and p.agent_decision == "resolve" for p in overrides)
    assert all("login-outage" in p.reason for p in overrides)
    coverage = [p for p in ranked if p.picked_by == "coverage"]
    assert coverage and all(p.reason == "product mobile has 0 reviews" for p in coverage), "picks spread over reasons"
    assert build_queue(ws, n=20, random_share=0.25, seed=3).picks == queue.picks, "deterministic for a seed"
    reviewed = {s.session_id for s in ws.sessions}
    assert not reviewed & {p.session_id for p in queue.picks}


def test_random_picks_give_each_decision_and_entity_its_share_of_the_draws(live_project):
    ws = Workspace(live_project)
    pending = {e["session_id"]: e for e in (decision(ticket(1000 + i, PRODUCTS[i % 4] if i < 190 else "mobile",
                                                      5 + (i * 11) % 50)) for i in range(200))}
    cells = Counter((pending[s]["decision"], pending[s]["case"]["product"]) for s in pending)
    for seed in range(10):
        queue = build_queue(ws, n=20, random_share=1.0, seed=seed)
        picked = Counter((pending[p.session_id]["decision"], pending[p.session_id]["case"]["product"]) for p in queue.picks)
        assert all(abs(picked[cell] - 20 * size / 200) < 1 for cell, size in cells.items()), (seed, picked)
        assert all(p.picked_by == "random" and p.probability == pytest.approx(0.1) for p in queue.picks)


def test_a_balanced_draw_gives_every_position_the_same_chance():
    import random
    ranks = spread_ranks([["a"] * 17 + ["b"] * 9 + ["c"] * 4])
    counts = Counter(i for k in range(3000) for i in balanced_sample(ranks, 7, random.Random(k)))
    assert set(counts) == set(range(30))
    assert all(abs(c - 3000 * 7 / 30) < 120 for c in counts.values()), counts  # 700 each, SD about 23


def test_a_balanced_draw_takes_every_step_of_the_positions_sorted_by_their_values_ties_at_random():
    import random
    values = random.Random(5)
    columns = [[values.choice(["approve", "reject"]) for _ in range(500)],
               [values.choice(["Acme", None, 7, "Zeta", True]) for _ in range(500)],
               [values.choice([3.5, 120, 99.0, "n/a"]) for _ in range(500)]]

    def part(value):
        return (0, value, "") if type(value) in (int, float) else (1, 0, "" if value is None else str(value))
    for seed in range(20):
        order = list(range(500))
        rng = random.Random(seed)
        rng.shuffle(order)
        order.sort(key=lambda i: tuple(part(column[i]) for column in columns))  # stable: ties in the random order
        step, start = 500 / 40, rng.random() * 500 / 40
        expected = [order[int(start + j * step)] for j in range(40)]
        assert balanced_sample(spread_ranks(columns), 40, random.Random(seed)) == expected


def test_queue_ranks_with_the_garbage_collector_paused_and_restores_it(live_project):
    import gc

    ws = Workspace(live_project)
    ws.sessions  # read before: only the ranking is watched
    passes = []

    def watch(phase, info):
        if phase == "start":
            passes.append(info["generation"])

    gc.callbacks.append(watch)
    threshold = gc.get_threshold()
    gc.set_threshold(50)  # a pass every 50 new objects: ranking 200 decisions would start many
    try:
        queue = build_queue(ws, n=20, random_share=0.25, seed=3)
    finally:
        gc.callbacks.remove(watch)
        gc.set_threshold(*threshold)
    assert len(queue.picks) == 20
    assert passes == [], "no collector passes over the pending decisions while ranking"
    assert gc.isenabled()


def test_a_batch_spends_at_most_max_per_key_picks_on_one_rule_or_region(live_project):
    ws = Workspace(live_project)
    queue = build_queue(ws, n=40, random_share=0.0, seed=3)
    ranked = Counter(p.reason for p in queue.picks if p.picked_by != "random")
    assert ranked and max(ranked.values()) <= MAX_PER_KEY, ranked
    assert sum("login-outage" in reason for reason in ranked.elements()) == MAX_PER_KEY, "the rule still gets its share"
    assert len(queue.picks) == 40, "the slots left over are drawn at random"


def test_queue_looks_around_a_reviewed_override_the_config_cannot_explain_yet(live_project):
    ws = Workspace(live_project)
    traffic = [json.loads(line) for line in (live_project / "traffic.jsonl").open()]
    api = [e for e in traffic if e["case"]["product"] == "api" and e["decision"] == "resolve"][:2]
    write_jsonl(live_project / "api-reviews.jsonl", [review(e["case"], api_rule=True) for e in api])
    ws.ingest(str(live_project / "api-reviews.jsonl"))
    ws = Workspace(live_project)
    queue = build_queue(ws, n=30, random_share=0.0, seed=3)
    around = [p for p in queue.picks if p.picked_by == "unexplained-override"]
    cases = {e["session_id"]: e["case"] for e in traffic}
    assert around and all(p.predicted == "escalate" and p.agent_decision == "resolve" for p in around)
    assert all(cases[p.session_id]["product"] == "api" for p in around), [p.reason for p in around]
    assert all("product eq api" in p.reason and "2 of " in p.reason for p in around)


def test_queue_picks_cases_the_fold_models_disagree_on(live_project):
    ws = Workspace(live_project)
    reference = [e for e in ws.experiments.all() if e.manifest.proposals][-1]
    runs = [{"fold": k, "proposals": [{"id": "long-waits", "when": {"minutes": {"gt": 40}}, "decision": "resolve"}]
             if k < 2 else []} for k in range(4)]
    manifest = reference.manifest.model_copy(update={"id": ws.experiments.next_id("folds"), "mining": {"cv": {
        "mode": "cv", "fold_runs": runs}}})
    ws.experiments.create(manifest, read_tree(reference.config_dir), read_tree(reference.config_dir), "# folds\n")
    reviewing.review(ws, manifest.id, accept=[p.id for p in manifest.proposals], reject=[])
    queue = build_queue(ws, n=40, random_share=0.0)
    split = [p for p in queue.picks if p.picked_by == "fold-disagreement"]
    assert split and all("split 2–2" in p.reason for p in split)
    traffic = {json.loads(line)["session_id"]: json.loads(line)["case"] for line in (live_project / "traffic.jsonl").open()}
    assert all(traffic[p.session_id]["minutes"] > 40 for p in split)


def test_recorded_picks_are_not_picked_again_and_their_reviews_get_honest_estimates(live_project):
    ws = Workspace(live_project)
    with ws.store() as store:
        queue = build_queue(ws, n=20, random_share=0.5, seed=1, batch=next_batch(store.db))
        record(store.db, queue)
        assert next_batch(store.db) == "q0002"
    again = build_queue(ws, n=20, random_share=0.5, seed=1)
    assert not {p.session_id for p in again.picks} & {p.session_id for p in queue.picks}
    traffic = {json.loads(line)["session_id"]: json.loads(line) for line in (live_project / "traffic.jsonl").open()}
    write_jsonl(live_project / "answers.jsonl", [review(traffic[p.session_id]["case"]) for p in queue.picks])
    ws.ingest(str(live_project / "answers.jsonl"))
    results = Workspace(live_project).score(Workspace(live_project).baseline())
    sampling = results["sampling"]
    assert sampling["not_from_queue"] == 80 and sampling["weighted"]["batches"] == 1
    randoms = sum(p.picked_by == "random" for p in queue.picks)
    assert randoms >= 10 and sampling["random"]["sessions"] == randoms
    # the ranked half is mostly predicted overrides: unweighted agreement is biased low, the weighted one less so
    assert sampling["unweighted"]["agreement"] < sampling["weighted"]["agreement"]
    low, high = sampling["weighted"]["interval95"]
    assert low <= sampling["weighted"]["agreement"] <= high
    assert results["all"]["kappa"] is not None and -1 <= results["all"]["kappa"] <= 1


def test_weighted_estimate_adds_each_batchs_known_picks_to_its_random_share_for_the_rest():
    agree = {**{f"A{i}": i < 8 for i in range(10)}, **{f"B{i}": False for i in range(5)}, **{f"C{i}": True for i in range(5)}}
    sessions = [ReviewedSession(sid, {}, "a", "a" if ok else "b") for sid, ok in agree.items()]
    picks = {**{f"A{i}": {"batch": "q0001", "picked_by": "random", "pool": 100} for i in range(10)},
             **{f"B{i}": {"batch": "q0002", "picked_by": "predicted-override", "pool": 90} for i in range(5)},
             **{f"C{i}": {"batch": "q0002", "picked_by": "random", "pool": 90} for i in range(5)}}
    out = sampled_agreement(sessions, {s: "a" for s in agree}, picks)
    first, second = 8 / 10, (8 + 0 + 85 * 1.0) / (10 + 90)
    assert out["weighted"]["agreement"] == pytest.approx((10 * first + 5 * second) / 15, abs=1e-4)
    assert out["unweighted"]["agreement"] == 0.65 and out["random"]["agreement"] == pytest.approx(13 / 15, abs=1e-4)
    # Hájek, pooled: a random pick stands for 1 / (the chance of being drawn in either batch), a ranked one for itself
    weight = 1 / (1 - (1 - 10 / 100) * (1 - 5 / 85))
    assert out["hajek"]["agreement"] == pytest.approx((0 * 5 + weight * 13) / (5 + weight * 15), abs=1e-4)


def queue_picks(agrees: dict[str, bool], rng) -> dict[str, dict]:
    """Eight batches of a queue that finds overrides well: 20 overrides ranked first, then
    random picks (50 in the first batch, 5 after), each pick with how it was picked."""
    pool, picks = list(agrees), {}
    for batch in range(8):
        ranked = [s for s in pool if not agrees[s]][:20]
        rest = [s for s in pool if s not in ranked]
        randoms = rng.sample(rest, 5 if batch else 50)
        for s in ranked + randoms:
            picks[s] = {"batch": f"q{batch:04d}", "picked_by": "random" if s in randoms else "boundary", "pool": len(pool)}
        pool = [s for s in pool if s not in picks]
    return picks


def test_weighted_estimate_is_unbiased_when_ranked_picks_chase_the_disagreements():
    import random

    rng = random.Random(5)
    truth, estimates, raw, pooled = [], [], [], []
    for _ in range(200):
        agrees = {f"S{i}": rng.random() < 0.7 for i in range(2000)}
        picks = queue_picks(agrees, rng)
        sessions = [ReviewedSession(s, {}, "a", "a" if agrees[s] else "b") for s in picks]
        out = sampled_agreement(sessions, {s: "a" for s in picks}, picks)
        truth.append(sum(agrees.values()) / len(agrees))
        estimates.append(out["weighted"]["agreement"])
        pooled.append(out["hajek"]["agreement"])
        raw.append(out["unweighted"]["agreement"])
    bias = sum(estimates) / len(estimates) - sum(truth) / len(truth)
    assert abs(bias) < 0.01, bias
    hajek = sum(e - t for e, t in zip(pooled, truth)) / len(truth)
    assert hajek < -0.02, "one pooled weight for the random picks of every batch: the pooled Hájek figure is low"
    assert sum(raw) / len(raw) < sum(truth) / len(truth) - 0.2, "the unweighted figure shows the bias the weights remove"


def test_flag_lists_predicted_overrides_with_rule_evidence_and_exits_1(live_project):
    runner = CliRunner()
    result = runner.invoke(app, ["flag", "--project", str(live_project), "--json"])
    assert result.exit_code == 1, result.output
    out = json.loads(result.output)
    flags = out["flags"]
    assert flags and all(f["rule"] == "login-outage" and f["predicted"] == "escalate" and f["agent_decision"] == "resolve"
                         for f in flags)
    assert len(flags) == sum(1 for i in range(190) if PRODUCTS[i % 4] == "login" and 5 + (i * 11) % 50 <= 30)
    assert flags[0]["evidence_sessions"] and (flags[0]["precision"], flags[0]["precision_kind"]) == (1.0, "out-of-fold")
    since = runner.invoke(app, ["flag", "--project", str(live_project), "--since", "2027-01-01"])
    assert since.exit_code == 0 and "No predicted overrides" in since.output and "at or after 2027-01-01" in since.output


def test_flag_keeps_only_overrides_of_rules_at_least_as_precise_as_asked(live_project, monkeypatch):
    ws = Workspace(live_project)
    _, every = flag(ws)
    assert every and {f.precision for f in every} == {1.0} and flag(ws, min_precision=1.0)[1] == every
    monkeypatch.setattr("improver.flag.rule_precision", lambda *a: (0.8, "out-of-fold"))
    assert len(flag(ws, min_precision=0.8)[1]) == len(every) and flag(ws, min_precision=0.85)[1] == []
    result = CliRunner().invoke(app, ["flag", "--project", str(live_project), "--min-precision", "0.85"])
    assert result.exit_code == 0 and "rules at least 85% precise agree" in result.output


def test_flag_with_an_experiment_without_rules_says_so(live_project):
    result = CliRunner().invoke(app, ["flag", "--project", str(live_project), "--experiment", "0001-baseline"])
    assert "0001-baseline has no learned rules to flag with" in str(result.exception)


def test_flag_and_queue_refuse_a_since_that_is_not_an_iso_timestamp(live_project):
    runner = CliRunner()
    for command in (["flag"], ["queue", "--dry-run"]):
        result = runner.invoke(app, [*command, "--project", str(live_project), "--since", "01/11/2026"])
        assert isinstance(result.exception, ImproverError), result.output  # main() prints it and exits 2
        assert "not an ISO 8601 date or timestamp" in str(result.exception) and "2026-11-01T09:00:00Z" in str(result.exception)
    assert runner.invoke(app, ["flag", "--project", str(live_project), "--since", "2026-11-01T09:00:00Z"]).exit_code == 1


def test_queue_command_writes_picks_for_a_labelling_tool(live_project, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["queue", "--project", str(live_project), "-n", "8", "--out", str(tmp_path / "q.csv")])
    assert result.exit_code == 0, result.output
    assert "Recorded as batch q0001" in result.output
    rows = list(csv.DictReader((tmp_path / "q.csv").open()))
    assert len(rows) == 8 and {"session_id", "picked_by", "reason", "probability", "agent_reasoning"} <= set(rows[0])
    assert all(r["case.ticket"] == r["session_id"] and r["case.product"] for r in rows), "what the reviewer reads"
    dry = runner.invoke(app, ["queue", "--project", str(live_project), "-n", "3", "--dry-run", "--json"])
    assert dry.exit_code == 0
    assert not {p["session_id"] for p in json.loads(dry.output)["picks"]} & {r["session_id"] for r in rows}
    result = runner.invoke(app, ["queue", "--project", str(live_project), "-n", "3", "--out", str(tmp_path / "q.jsonl")])
    picks = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert "Recorded as batch q0002" in result.output and all(p["case"]["ticket"] == p["session_id"] for p in picks)


def test_two_queues_drawn_at_once_record_one_batch_and_the_other_is_refused_whole(live_project):
    ws = Workspace(live_project)
    with ws.store() as store:
        first = build_queue(ws, n=10, seed=1, batch=next_batch(store.db))
        second = build_queue(ws, n=10, seed=2, batch=next_batch(store.db))
        record(store.db, first)
        with pytest.raises(ImproverError, match="another improver queue recorded batch q0001"):
            record(store.db, second)
        rows = store.db.execute("SELECT session_id, batch FROM queue_picks").fetchall()
        assert sorted(rows) == sorted((p.session_id, "q0001") for p in first.picks)
        assert next_batch(store.db) == "q0002"
        record(store.db, build_queue(ws, n=10, seed=2, batch="q0002"))  # drawn again: recorded
        assert next_batch(store.db) == "q0003"


def test_a_queue_drawn_while_an_ingest_holds_the_store_says_so_and_records_nothing(live_project):
    ws = Workspace(live_project)
    with ws.store() as store:
        queue = build_queue(ws, n=5, seed=1, batch=next_batch(store.db))
    holder = sqlite3.connect(live_project / ".improver" / "traces.sqlite")
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        with ws.store() as store:
            store.db.execute("PRAGMA busy_timeout = 100")
            with pytest.raises(ImproverError, match="stayed locked by another improver process"):
                record(store.db, queue)
    finally:
        holder.rollback()
    with ws.store() as store:
        assert next_batch(store.db) == "q0001"


def test_a_queue_whose_file_cannot_be_written_records_no_batch(live_project, tmp_path, monkeypatch):
    runner = CliRunner()
    bad = runner.invoke(app, ["queue", "--project", str(live_project), "-n", "4", "--out", str(tmp_path / "q.txt")])
    assert "use a .jsonl or .csv file name" in str(bad.exception)
    monkeypatch.setattr("improver.cli.queue.write_picks", lambda *a: (_ for _ in ()).throw(ImproverError("refused")))
    refused = runner.invoke(app, ["queue", "--project", str(live_project), "-n", "4", "--out", str(tmp_path / "q.csv")])
    assert str(refused.exception) == "refused"
    with Workspace(live_project).store() as store:
        assert next_batch(store.db) == "q0001", "the picks nobody received are not awaited as reviews"


def test_a_damaged_precedent_registry_is_named_and_left_as_it_is(live_project):
    registry = live_project / ".improver" / "precedents.json"
    registry.write_text('{"next": 3, "precedents": [')
    with pytest.raises(ImproverError, match="precedents.json is damaged .*move it aside"):
        track(Workspace(live_project))
    assert registry.read_text() == '{"next": 3, "precedents": ['


def test_a_precedent_keeps_its_id_from_new_to_growing_to_handled(tmp_path, tiny_project):
    weeks = ["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"]
    ws = Workspace(tiny_project)
    statuses, ids = [], []
    for week, day in enumerate(weeks):
        products = PRODUCTS if week >= 2 else PRODUCTS[:3]  # API tickets (and the API precedent) start in week 3
        cases = [ticket(100 * week + i, products[i % len(products)], 5 + (i * 7) % 25) for i in range(24)]
        rows = [decision(c, f"{day}T09:00:00Z") for c in cases]
        rows += [review(c, f"{day}T10:00:00Z", api_rule=week >= 2) for c in cases]
        write_jsonl(tmp_path / f"week{week}.jsonl", rows)
        ws.ingest(str(tmp_path / f"week{week}.jsonl"))
        entries = {e["name"]: e for e in track(ws)["precedents"]}
        api = entries.get("api-deprecation")
        statuses.append(api and api["status"])
        ids.append(api and api["id"])
    assert statuses == [None, None, "new", "growing"]
    assert ids[2] == ids[3]
    assert entries["api-deprecation"]["weekly"] == {"2026-W47": 6, "2026-W48": 6}
    state = run_cycles(ws, max_cycles=1)
    best = ws.experiments.get(state["parent"])
    assert any(p.precedent == "api-deprecation" for p in best.manifest.proposals)
    reviewing.review(ws, best.id, accept=[p.id for p in best.manifest.proposals], reject=[])
    entries = {e["name"]: e for e in track(ws)["precedents"]}
    assert entries["api-deprecation"]["status"] == "handled" and entries["api-deprecation"]["id"] == ids[2]
    assert entries["login-outage"]["status"] == "handled"
    assert track(ws) == track(ws), "tracking again with nothing new changes nothing"
    from improver.report import render

    page = render(ws)
    section = page[page.index("<section id=precedents>"):]
    assert "api-deprecation" in section and section.count("<svg class=spark") == len(entries)
    assert 'aria-label="0, 0, 6, 6"' in section, "the API precedent's overrides per week, weeks 1 to 4"


def test_queue_tools_answer_over_the_real_mcp_client(live_project):
    import anyio
    from mcp import Client

    from improver.mcp import build_server

    async def main():
        async with Client(build_server(live_project)) as client:
            return [await client.call_tool(name, arguments) for name, arguments in
                    (("review_queue", {"n": 6, "random_share": 0.5}), ("predicted_overrides", {}),
                     ("precedents_over_time", {}))]
    queued, flagged, tracked = anyio.run(main)
    for result in (queued, flagged, tracked):
        assert not result.is_error, result.content[0].text
    picks = queued.structured_content["picks"]
    assert len(picks) == 6 and queued.structured_content["recorded"] is True
    assert sum(p["picked_by"] == "random" for p in picks) == 3
    assert {f["rule"] for f in flagged.structured_content["flags"]} == {"login-outage"}
    assert [p["name"] for p in tracked.structured_content["precedents"]] == ["login-outage"]


def simulated_estimates(right: float, runs: int = 200, seed: int = 7,
                        first_batch_modelled: bool = True) -> tuple[list, list, list]:
    """Truth, weighted and model-assisted estimates over simulated queues, the model right with chance ``right``
    (0.5: it knows nothing); without ``first_batch_modelled``, the first batch has no model (as in a real queue)."""
    import random

    rng = random.Random(seed)
    truth, weighted, assisted = [], [], []
    for _ in range(runs):
        agrees = {f"S{i}": rng.random() < 0.7 for i in range(2000)}
        predicted = {s: int(ok if rng.random() < right else rng.random() < 0.5) if right < 1 else int(ok)
                     for s, ok in agrees.items()}
        picks = queue_picks(agrees, rng)
        sessions = [ReviewedSession(s, {}, "a", "a" if agrees[s] else "b") for s in picks]
        decisions = {s: "a" for s in picks}
        truth.append(sum(agrees.values()) / len(agrees))
        weighted.append(sampled_agreement(sessions, decisions, picks)["weighted"]["agreement"])
        models = {pick["batch"]: predicted for pick in picks.values()  # one model, made before any draw
                  if first_batch_modelled or pick["batch"] != "q0000"}
        assisted.append(difference_estimate(sessions, decisions, picks, models)["agreement"])
    return truth, weighted, assisted


def rmse(estimates: list, truth: list) -> float:
    return (sum((e - t) ** 2 for e, t in zip(estimates, truth)) / len(truth)) ** 0.5


def test_difference_estimate_is_unbiased_and_tighter_than_the_weighted_one_with_a_good_model():
    truth, weighted, assisted = simulated_estimates(right=0.9)  # right 90% of the time, else a coin
    bias = sum(a - t for a, t in zip(assisted, truth)) / len(truth)
    assert abs(bias) < 0.005, bias
    # errors of such a model vary ~0.05 where agreement varies 0.21: about half the spread
    assert rmse(assisted, truth) < 0.7 * rmse(weighted, truth), (rmse(assisted, truth), rmse(weighted, truth))


def test_the_first_batchs_luck_fades_from_the_estimate_once_later_batches_are_corrected_by_a_model():
    """The first batch (50 random picks) has no model, the later ones (5 random picks each) a good
    one made before their draw: weighed by their variance rather than by their picks, the corrected
    batches outweigh the first one's plain figure, and the estimate stays unbiased."""
    truth, weighted, assisted = simulated_estimates(right=0.95, seed=9, first_batch_modelled=False)
    bias = sum(a - t for a, t in zip(assisted, truth)) / len(truth)
    assert abs(bias) < 0.005, bias
    assert rmse(assisted, truth) < 0.75 * rmse(weighted, truth), (rmse(assisted, truth), rmse(weighted, truth))


def test_model_assisted_estimate_with_a_useless_model_is_no_worse_than_the_weighted_one():
    truth, weighted, assisted = simulated_estimates(right=0.0)  # a coin: the slope takes the model out
    assert rmse(assisted, truth) < 1.05 * rmse(weighted, truth), (rmse(assisted, truth), rmse(weighted, truth))


def test_model_assisted_estimate_is_unbiased_when_each_batchs_model_learned_from_the_reviews_before_it():
    """The queue's model learns from every review, the random picks' too, and chases what they
    taught: a later model predicts earlier random picks better than the traffic they stand for.
    Each batch corrected with the model the queue had when it drew the batch stays unbiased; one
    model that has seen all the reviews, for every batch, is biased (what drove bench/active.py's
    model-assisted figure 1 to 3 points off)."""
    import random

    rng = random.Random(11)
    truth, per_batch, latest = [], [], []
    for _ in range(200):
        agrees = {f"S{i}": rng.random() < 0.7 for i in range(2000)}
        guess = {s: int(ok) if rng.random() < 0.8 else int(rng.random() < 0.5) for s, ok in agrees.items()}
        picks = queue_picks(agrees, rng)
        sessions = [ReviewedSession(s, {}, "a", "a" if agrees[s] else "b") for s in picks]
        decisions = {s: "a" for s in picks}
        batches = sorted({p["batch"] for p in picks.values()})
        models = {}
        for index, batch in enumerate(batches):  # before batch b: right on every review of the batches before it
            seen = {s for s, p in picks.items() if p["batch"] < batch}
            models[batch] = {s: int(agrees[s]) if s in seen else g for s, g in guess.items()}
        every = {s: int(agrees[s]) if s in picks else g for s, g in guess.items()}  # after the last review
        truth.append(sum(agrees.values()) / len(agrees))
        per_batch.append(difference_estimate(sessions, decisions, picks, models)["agreement"])
        latest.append(difference_estimate(sessions, decisions, picks, {b: every for b in batches})["agreement"])
    bias = sum(e - t for e, t in zip(per_batch, truth)) / len(truth)
    assert abs(bias) < 0.004, bias
    leaked = sum(e - t for e, t in zip(latest, truth)) / len(truth)
    assert leaked < -0.01, leaked


def test_a_model_without_a_record_on_random_picks_counts_for_nothing_until_it_has_one():
    """The first batch's model has no reviewed random picks of earlier batches to fit its slope on
    (five of its own are too few): it counts for nothing and the estimate is the weighted figure,
    however wrong the model; once earlier batches give it a record, a wrong model's slope is 0."""
    import random

    rng = random.Random(4)
    agrees = {f"S{i}": rng.random() < 0.7 for i in range(2000)}
    wrong = {s: int(not ok) if rng.random() < 0.7 else int(ok) for s, ok in agrees.items()}
    picks = queue_picks(agrees, rng)
    for two in (True, False):
        kept = {s: p for s, p in picks.items() if p["batch"] <= "q0001" or not two}
        sessions = [ReviewedSession(s, {}, "a", "a" if agrees[s] else "b") for s in kept]
        decisions = {s: "a" for s in kept}
        models = {b: wrong for b in {p["batch"] for p in kept.values()} if b != "q0000"}  # none for the first, all-random batch
        out = difference_estimate(sessions, decisions, kept, models)
        weighted = sampled_agreement(sessions, decisions, kept)["weighted"]["agreement"]
        if two:
            assert out["agreement"] == pytest.approx(weighted, abs=1e-4) and out["slope"] == 0.0
        else:
            assert out["slope"] == 0.0, "seven batches' random picks show the model is no good"
            assert out["agreement"] == pytest.approx(weighted, abs=0.01)


def test_model_assisted_estimate_with_the_model_recorded_with_each_batch_recovers_the_agents_agreement(live_project):
    ws = Workspace(live_project)
    with ws.store() as store:
        queue = build_queue(ws, n=30, random_share=0.5, seed=2, batch=next_batch(store.db))
        record(store.db, queue)
    traffic = {json.loads(line)["session_id"]: json.loads(line) for line in (live_project / "traffic.jsonl").open()}
    write_jsonl(live_project / "answers.jsonl", [review(traffic[p.session_id]["case"]) for p in queue.picks])
    ws.ingest(str(live_project / "answers.jsonl"))
    ws = Workspace(live_project)
    reference = [e for e in ws.experiments.all() if e.manifest.proposals][-1]
    out = model_assisted(ws, ws.baseline(), reference)
    assert out["model"].startswith("the reference the queue had") and out["models"] == 1
    agree = [review(e["case"])["decision"] == e["decision"] for e in traffic.values()]
    # the reference the queue had learned the login rule, so each prediction is right and the estimate is exact
    assert out["agreement"] == pytest.approx(sum(agree) / len(agree), abs=1e-4)
    assert out["interval95"][0] <= out["agreement"] <= out["interval95"][1]
    sampling = ws.score(ws.baseline())["sampling"]  # the agent's scores carry it, labelled
    assert sampling["model_assisted"]["agreement"] == out["agreement"] and sampling["model_assisted"]["model"] == out["model"]
    with ws.store() as store:  # a batch recorded without its model (an older improver): the plain weighted figure
        store.db.execute("DELETE FROM queue_models")
        store.db.commit()
    constant = model_assisted(ws, ws.baseline())
    weighted = ws.score(ws.baseline())["sampling"]["weighted"]["agreement"]
    assert constant["model"].startswith("none") and constant["agreement"] == pytest.approx(weighted, abs=1e-4)


def test_edge_picks_lie_between_a_rules_threshold_and_the_nearest_reviewed_case_that_kept_the_agents_call():
    import numpy as np

    from improver.features import Columns
    from improver.queue import _edge_reasons
    from improver.runtime import Rule

    rule = Rule("giveaway", {"age": {"lt": 35}, "text": {"contains": "giveaway"}}, "remove")
    reviewed = [ReviewedSession("R1", {"age": 90, "text": "a giveaway"}, "keep", "keep"),  # outside, kept: the line is below 90
                ReviewedSession("R2", {"age": 20, "text": "a giveaway"}, "keep", "remove")]
    cases = [{"age": a, "text": "a giveaway"} for a in (20, 40, 60, 85, 95)] + [{"age": 50, "text": "holiday photos"},
                                                                               {"age": 50, "text": "a giveaway"}]
    agent = np.array(["keep"] * 6 + ["remove"], dtype=object)
    reasons = [[] for _ in cases]
    _edge_reasons(Columns(cases), agent, reasons, reviewed, [rule])
    picked = [cases[i]["age"] for i, found in enumerate(reasons) if found]
    assert picked == [40, 60, 85]
    assert all(r.picked_by == "rule-edge" and r.predicted == "remove" and "between it and 90" in r.text
               for found in reasons for r in found)



def test_boundary_picks_only_cases_the_agent_decides_otherwise_than_the_rule():
    """Near a learned threshold, only where the agent decides otherwise than the rule would the
    line lying elsewhere change a decision; where it already decides as the rule, a review there
    says nothing about the line."""
    import numpy as np

    from improver.features import Columns
    from improver.queue import _boundary_reasons

    cases = [{"age": a} for a in (32, 33, 36, 37, 80)]
    agent = np.array(["remove", "keep", "remove", "keep", "keep"], dtype=object)
    reasons = [[] for _ in cases]
    _boundary_reasons(Columns(cases), agent, reasons, [("rule young", {"age": {"lt": 35}}, "remove")])
    assert [cases[i]["age"] for i, found in enumerate(reasons) if found] == [33, 37]
    assert all(r.picked_by == "boundary" for found in reasons for r in found)


def test_a_slope_is_not_taken_from_random_picks_the_model_predicted_all_alike():
    """Twelve earlier random picks all predicted to agree say nothing of how the model does where
    it predicts an override: its slope is 0 (the weighted figure), not 1 (its predictions taken whole)."""
    from improver.queue import fitted_slope

    assert fitted_slope([(1, 1)] * 8 + [(0, 1)] * 4) == 0.0
    agrees = {f"S{i:03d}": i % 5 != 0 for i in range(200)}  # 80% agree
    wrong = {s: 0 if i >= 180 else 1 for i, s in enumerate(agrees)}  # predicts overrides on 20 that agree
    first = [f"S{i:03d}" for i in range(0, 60, 5)] + [f"S{i:03d}" for i in range(1, 40, 5)]  # 12 + 8, none in S180+
    second = [f"S{i:03d}" for i in range(2, 27, 5)]
    picks = {**{s: {"batch": "q0001", "picked_by": "random", "pool": 200} for s in first},
             **{s: {"batch": "q0002", "picked_by": "random", "pool": 180} for s in second}}
    sessions = [ReviewedSession(s, {}, "a", "a" if agrees[s] else "b") for s in picks]
    decisions = {s: "a" for s in picks}
    out = difference_estimate(sessions, decisions, picks, {"q0002": wrong})
    weighted = sampled_agreement(sessions, decisions, picks)["weighted"]["agreement"]
    assert out["slope"] == 0.0 and out["agreement"] == pytest.approx(weighted, abs=1e-4)


def agreed_api_reviews(live_project, count: int = 4) -> set[str]:
    """Reviews of API tickets the agent escalated, the reviewer agreeing and naming a precedent no rule has learned."""
    traffic = [json.loads(line) for line in (live_project / "traffic.jsonl").open()]
    api = [e for e in traffic if e["case"]["product"] == "api" and e["decision"] == "escalate"][:count]
    write_jsonl(live_project / "agreed.jsonl", [
        {**review(e["case"]), "decision": "escalate", "precedent": "api-deprecation",
         "reasoning": "API tickets go to platform while v1 is retired."} for e in api])
    Workspace(live_project).ingest(str(live_project / "agreed.jsonl"))
    return {e["session_id"] for e in api}


def test_queue_looks_for_cases_of_a_precedent_reviewers_named_where_they_agreed_with_the_agent(live_project):
    agreed_api_reviews(live_project)
    ws = Workspace(live_project)
    queue = build_queue(ws, n=30, random_share=0.0, seed=3)
    looked = [p for p in queue.picks if p.picked_by == "unlearned-precedent"]
    cases = {json.loads(line)["session_id"]: json.loads(line)["case"] for line in (live_project / "traffic.jsonl").open()}
    # the agent escalated every tagged ticket, so no override points there: only the tag does
    assert looked and all(p.predicted == "escalate" and p.agent_decision == "resolve" for p in looked)
    assert all(cases[p.session_id]["product"] == "api" for p in looked), [p.reason for p in looked]
    assert all("tagged api-deprecation, which no rule has learned" in p.reason for p in looked)


def test_a_precedent_a_rule_has_learned_is_not_looked_for_again(tiny_project):
    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    run_cycles(ws, max_cycles=1)
    traffic = [decision(ticket(1000 + i, [*PRODUCTS, "mobile"][i % 5], 5 + (i * 11) % 50)) for i in range(300)]
    write_jsonl(tiny_project / "traffic.jsonl", traffic)
    ws.ingest(str(tiny_project / "traffic.jsonl"))
    mobile = [e for e in traffic if e["case"]["product"] == "mobile"]

    def reviews(name: str, events: list[dict]) -> Workspace:
        write_jsonl(tiny_project / f"{name}.jsonl", [
            {**review(e["case"]), "decision": "escalate", "precedent": "mobile-launch",
             "reasoning": "Mobile tickets go to the app team during the launch."} for e in events])
        Workspace(tiny_project).ingest(str(tiny_project / f"{name}.jsonl"))
        return Workspace(tiny_project)

    ws = reviews("agreed", [e for e in mobile if e["decision"] == "escalate"][:4])
    before = [p for p in build_queue(ws, n=30, random_share=0.0, seed=3).picks if p.picked_by == "unlearned-precedent"]
    assert before and all("mobile-launch" in p.reason for p in before), "only agreements name it yet: it is looked for"
    ws = reviews("overridden", [e for e in mobile if e["decision"] == "resolve"][:12])
    run_cycles(ws, max_cycles=1)
    ws = Workspace(tiny_project)
    assert "mobile-launch" in learned_precedents(reference_experiment(ws), ws)
    after = build_queue(ws, n=30, random_share=0.0, seed=3)
    assert len(after.picks) == 30
    assert not [p for p in after.picks if p.picked_by == "unlearned-precedent"], "the rule speaks for it now"


def test_queue_looks_inside_a_rule_where_no_reviewed_case_it_decides_resembles_the_traffic():
    """A vendor's quotes are rejected on four reviews, none of them for the Atlas project; the
    Atlas quotes the rule would reject are where an exception could hide, so they are queued.
    Once a reviewed Atlas quote confirms the rule there, nothing in it is unconfirmed."""
    import numpy as np

    from improver.features import Columns
    from improver.queue import _Hypotheses, _unconfirmed_reasons
    from improver.runtime import Rule

    rule = Rule("datastream-reject", {"vendor": {"eq": "DataStream"}}, "reject")
    reviewed = [ReviewedSession(f"R{i}", {"vendor": "DataStream", "note": "renewal of seats"}, "approve", "reject")
                for i in range(4)]
    cases = ([{"vendor": "DataStream", "note": "renewal of seats"}] * 20 + [{"vendor": "DataStream", "note": "atlas project milestone"}] * 4
             + [{"vendor": "CloudBase", "note": "atlas project milestone"}] * 4)
    agent = np.array(["approve"] * len(cases), dtype=object)

    def unconfirmed(reviewed):
        reasons = [[] for _ in cases]
        _unconfirmed_reasons(_Hypotheses(Columns(cases), agent, reviewed), reasons, reviewed, [rule])
        return [i for i, found in enumerate(reasons) if found], [r for found in reasons for r in found]

    rows, found = unconfirmed(reviewed)
    assert rows == [20, 21, 22, 23]  # DataStream's Atlas quotes, not CloudBase's (the rule does not decide those)
    assert all(r.picked_by == "unconfirmed-rule" and r.predicted == "reject" and "holds note atlas, note milestone" in r.text
               for r in found)
    atlas = ReviewedSession("R9", {"vendor": "DataStream", "note": "atlas project milestone"}, "approve", "reject")
    assert unconfirmed([*reviewed, atlas]) == ([], [])
