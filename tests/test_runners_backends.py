"""Ways to run the target beyond the local pool: the decision cache around any runner, the
async runner's concurrency and rate limit, and the Ray runner on a local Ray started here."""
from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml

from improver.cycle import run_cycles
from improver.errors import RunFailedError, TargetError
from improver.project import Project
from improver.runners import runner_for
from improver.runners.cache import DecisionCache
from improver.workspace import Workspace


def with_target(project: Path, **target) -> Project:
    data = yaml.safe_load((project / "improver.yaml").read_text())
    data["target"].update(target)
    (project / "improver.yaml").write_text(yaml.safe_dump(data))
    return Project.load(project)


def test_a_second_cycle_on_unchanged_sessions_reruns_nothing_it_already_decided(tiny_project):
    lines = (tiny_project / "traces.jsonl").read_text().splitlines()
    (tiny_project / "first.jsonl").write_text("\n".join(lines[:80]) + "\n")
    first = Workspace(tiny_project)
    first.ingest(str(tiny_project / "first.jsonl"))
    run_cycles(first, max_cycles=2)
    assert first.runner.reruns > 0
    again = Workspace(tiny_project)
    run_cycles(again, max_cycles=2)  # the same proposals: the experiments holding them stand, decided
    assert again.runner.reruns == 0
    later = Workspace(tiny_project)
    later.ingest(str(tiny_project / "traces.jsonl"))  # more reviews: a new baseline on every session
    later.baseline()
    assert len(later.sessions) > len(first.sessions)
    assert later.runner.hits == len(first.sessions), "the sessions the first baseline decided come from the cache"
    assert later.runner.reruns == len(later.sessions) - len(first.sessions)


def test_the_cache_reruns_what_a_new_config_or_agent_version_may_decide_differently(tiny_project):
    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    cases = [s.case for s in ws.sessions]
    config = tiny_project / "config"
    ws.runner.run(cases, config)
    ws.runner.run(cases, config)
    assert (ws.runner.reruns, ws.runner.hits) == (len(cases), len(cases))
    (config / "learned_rules.yaml").write_text("rules:\n- {id: r, when: {product: {eq: login}}, decision: escalate}\n")
    answers = ws.runner.run(cases, config)
    assert ws.runner.reruns == 2 * len(cases)
    assert {a["decision"] for c, a in zip(cases, answers) if c["product"] == "login"} == {"escalate"}
    bumped = Workspace(with_target(tiny_project, version="2"))
    bumped.runner.run(cases, config)
    assert bumped.runner.reruns == len(cases) and bumped.runner.hits == 0


def test_the_cache_stores_a_repeated_answer_once_and_gives_each_case_its_own_copy(tmp_path):
    cache = DecisionCache(tmp_path / "decisions.sqlite")
    same = {"decision": "approve", "confidence": "high", "reasoning": "within budget", "cited": ["policy:tiers"]}
    cache.put("agent", "config", {f"k{i}": dict(same, cited=list(same["cited"])) for i in range(50)}
              | {"other": dict(same, decision="reject")})
    (blob,) = cache.db.execute("SELECT answers FROM runs").fetchone()
    assert len(orjson.loads(blob)["answers"]) == 2
    found = cache.get("agent", "config")
    assert found["k0"] == found["k49"] == same and found["other"]["decision"] == "reject"
    found["k0"]["cited"].append("changed")
    assert found["k1"]["cited"] == ["policy:tiers"]


def test_answers_that_mostly_have_their_own_reasoning_are_stored_one_a_case_and_read_back_equal(tmp_path):
    """An LLM's answers rarely repeat: telling equal ones apart would cost more than it saves."""
    cache = DecisionCache(tmp_path / "decisions.sqlite")
    answers = {f"k{i}": {"decision": "approve", "confidence": None, "reasoning": f"request {i} is fine", "cited": []}
               for i in range(40)} | {"k40": {"decision": "approve", "confidence": None, "reasoning": "request 0 is fine",
                                              "cited": []}}
    cache.put("agent", "config", answers)
    (blob,) = cache.db.execute("SELECT answers FROM runs").fetchone()
    row = orjson.loads(blob)
    assert row["keys"] == list(answers) and len(row["answers"]) == 41
    found = cache.get("agent", "config")
    assert found == answers and found["k0"] is not found["k40"]


def test_a_run_whose_answers_mostly_have_their_own_reasoning_stops_telling_equal_ones_apart(tmp_path, monkeypatch):
    """Past the first FORM_SAMPLE answers, most with their own text, the rest are kept as they come (no
    identity made for each): the row holds an answer a case, errors left out, and reads back equal."""
    from improver.runners import cache as cache_module

    identities = []
    identity = cache_module._identity
    monkeypatch.setattr(cache_module, "_identity", lambda answer: identities.append(1) or identity(answer))
    kept = cache_module.Kept()
    answers = [{"decision": "approve", "confidence": None, "reasoning": f"request {i} is fine", "cited": []}
               for i in range(3 * cache_module.FORM_SAMPLE)]
    answers[-1] = {"decision": "error", "confidence": None, "reasoning": "", "cited": [], "error": "boom"}
    for start in range(0, len(answers), 500):
        kept.add([f"k{i}" for i in range(start, start + 500)], answers[start:start + 500])
    assert len(identities) == cache_module.FORM_SAMPLE and len(kept) == len(answers) - 1
    db = DecisionCache(tmp_path / "decisions.sqlite")
    db.put_many([("agent", "config", kept)])
    assert db.get("agent", "config") == {f"k{i}": a for i, a in enumerate(answers[:-1])}


def test_a_cache_written_by_an_older_improver_still_reads(tmp_path):
    """Its table had no sizes and its rows one answer per case."""
    answer = {"decision": "approve", "confidence": None, "reasoning": "", "cited": []}
    old = sqlite3.connect(tmp_path / "decisions.sqlite")
    with old:
        old.execute("CREATE TABLE runs (agent TEXT NOT NULL, config TEXT NOT NULL, answers BLOB NOT NULL)")
        old.execute("INSERT INTO runs VALUES (?, ?, ?)", ("agent", "config", orjson.dumps({"k": answer})))
    old.close()
    cache = DecisionCache(tmp_path / "decisions.sqlite")
    assert cache.get("agent", "config") == {"k": answer}
    assert cache.db.execute("SELECT bytes FROM runs").fetchone()[0] == len(orjson.dumps({"k": answer}))


def test_the_cache_keeps_under_its_size_by_dropping_the_runs_asked_for_least_recently(tmp_path):
    answers = {f"k{i}": {"decision": "approve", "confidence": None, "reasoning": f"r{i}", "cited": []} for i in range(20)}
    size = len(DecisionCache._row(answers))
    cache = DecisionCache(tmp_path / "decisions.sqlite", max_bytes=2.5 * size)
    cache.put("agent", "a", answers)
    cache.put("agent", "b", answers)
    assert cache.get("agent", "a")  # a is asked for again: b is now the least recently used
    cache.put("agent", "c", answers)
    assert (cache.has("agent", "a"), cache.has("agent", "b"), cache.has("agent", "c")) == (True, False, True)
    cache.put("agent", "huge", {f"h{i}": dict(a, reasoning=f"h{i}" * 50) for i, a in enumerate(answers.values())})
    assert cache.has("agent", "huge"), "the run just stored stays, even when it alone is over the limit"
    assert not cache.has("agent", "a") and not cache.has("agent", "c")
    reopened = DecisionCache(tmp_path / "decisions.sqlite", max_bytes=2.5 * size)
    assert reopened.get("agent", "huge")["h3"]["reasoning"] == "h3" * 50


def test_error_answers_are_not_kept(tiny_project):
    ws = Workspace(with_target(tiny_project, max_error_share=1))
    answers = ws.runner.run([{"boom": True, "minutes": 1}, {"minutes": 50}], tiny_project / "config")
    assert [a["decision"] for a in answers] == ["error", "escalate"]
    ws.runner.run([{"boom": True, "minutes": 1}, {"minutes": 50}], tiny_project / "config")
    assert (ws.runner.reruns, ws.runner.hits) == (3, 1)


def test_runs_batched_together_answer_as_each_run_alone(tiny_project):
    """Leave-one-out reruns go in one batch: the same answers, errors included, as one run after another."""
    from improver.runners import run_many

    config, other = tiny_project / "config", tiny_project / "other-config"
    other.mkdir()
    (other / "learned_rules.yaml").write_text("rules:\n- {id: r, when: {minutes: {lt: 20}}, decision: escalate}\n")
    cases = [{"minutes": m} for m in range(5, 60, 3)]
    jobs = [(cases, config), ([{"boom": True, "minutes": 1}, *cases[:4]], other), ([], config), (cases[::2], other)]
    cache = tiny_project / ".improver" / "decisions.sqlite"
    for cached in (False, True):
        runner = runner_for(with_target(tiny_project, max_error_share=1, cache=cached))
        alone = [runner.run(cases_, folder) for cases_, folder in jobs]
        runner.close()
        cache.unlink(missing_ok=True)
        fresh = runner_for(with_target(tiny_project, max_error_share=1, cache=cached))
        together = run_many(fresh, jobs)
        assert together == alone
        assert [a["decision"] for a in together[1][:2]] == ["error", "escalate"]
        if cached:  # every case counted once, as a hit or a rerun; the batch's answers are kept
            total, hits = sum(len(cases_) for cases_, _ in jobs), fresh.hits
            assert fresh.reruns + hits == total and fresh.reruns > 0
            assert run_many(fresh, jobs) == alone and fresh.hits == hits + total - 1  # all but the error answer
        fresh.close()


def test_reruns_of_a_few_sessions_use_the_running_worker_processes(tiny_project):
    """The subset runner (leave-one-out, folds) has its own error share but no second pool to start."""
    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    cases = [s.case for s in ws.sessions]
    ws.runner.inner.run(cases, tiny_project / "config")
    started = [w.process.pid for w in ws.runner.inner._workers]
    answers = ws.subset_runner.inner.run([{"boom": True, "minutes": 1}] * 6, tiny_project / "config")
    assert [a["decision"] for a in answers] == ["error"] * 6  # past the main runner's 20% share: not failed
    assert [w.process.pid for w in ws.subset_runner.inner._workers if w.process.poll() is None] == started
    ws.runner.close()


ASYNC_AGENT = """
import asyncio, time
from improver.runtime import load_overlay
in_flight = {"now": 0, "most": 0, "starts": []}

async def decide(case, config_dir):
    in_flight["now"] += 1
    in_flight["most"] = max(in_flight["most"], in_flight["now"])
    in_flight["starts"].append(time.monotonic())
    await asyncio.sleep(0.02)  # an API call
    in_flight["now"] -= 1
    if case.get("boom"):
        raise RuntimeError("the API said no")
    rule = load_overlay(config_dir).match(case)
    return {"decision": rule.decision if rule else "resolve", "confidence": "high"}
"""


def test_the_async_runner_keeps_to_its_concurrency_and_rate_limit(tiny_project):
    (tiny_project / "async_agent.py").write_text(ASYNC_AGENT)
    project = with_target(tiny_project, callable="async_agent:decide", runner="async", concurrency=3, rate_limit=200,
                          cache=False)
    runner = runner_for(project)
    cases = [{"product": "login" if i % 2 else "api", "boom": i == 5} for i in range(30)]
    (tiny_project / "config" / "learned_rules.yaml").write_text(
        "rules:\n- {id: r, when: {product: {eq: login}}, decision: escalate}\n")
    done = []
    answers = runner.run(cases, tiny_project / "config", done.append)
    import async_agent

    assert [a["decision"] for a in answers] == ["error" if i == 5 else "escalate" if i % 2 else "resolve" for i in range(30)]
    assert "the API said no" in answers[5]["error"] and sum(done) == 30
    assert async_agent.in_flight["most"] == 3
    starts = async_agent.in_flight["starts"]
    assert starts[-1] - starts[0] >= 29 / 200 * 0.9  # evenly spaced starts, 200 a second


def test_the_async_runner_stops_calling_an_agent_whose_calls_keep_failing(tiny_project):
    """An API that is down: past target.max_error_share errors the run fails, without calling on for every case."""
    (tiny_project / "async_agent.py").write_text(ASYNC_AGENT)
    sys.modules.pop("async_agent", None)  # its call counts start at zero
    runner = runner_for(with_target(tiny_project, callable="async_agent:decide", runner="async", concurrency=4,
                                    max_error_share=0.1, cache=False))
    with pytest.raises(RunFailedError, match="the API said no"):
        runner.run([{"boom": True} for _ in range(400)], tiny_project / "config")
    import async_agent

    assert len(async_agent.in_flight["starts"]) < 60, "40 errors are over the share: it stops near there, not at 400"


def test_an_in_process_async_agent_runs_with_the_collector_on_even_inside_a_cycle(tiny_project):
    import gc

    (tiny_project / "collecting_agent.py").write_text(
        "import gc\nasync def decide(case, config_dir):\n    return {'decision': 'on' if gc.isenabled() else 'off'}\n")
    runner = runner_for(with_target(tiny_project, callable="collecting_agent:decide", runner="async", cache=False))
    gc.disable()  # as a cycle has it
    try:
        assert {a["decision"] for a in runner.run([{"n": n} for n in range(5)], tiny_project / "config")} == {"on"}
        assert not gc.isenabled()  # and paused again for the cycle's own rows
    finally:
        gc.enable()


def test_the_async_runner_refuses_a_plain_function(tiny_project):
    with pytest.raises(TargetError, match="not an `async def`"):
        runner_for(with_target(tiny_project, runner="async"))


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


def test_the_ray_runner_decides_like_the_local_runner_on_a_local_ray(tiny_project, local_ray):
    cases = [{"product": p, "minutes": m} for p in ("login", "api") for m in (5, 45)] * 600  # 3 tasks of 1000
    config = tiny_project / "config"
    (config / "learned_rules.yaml").write_text("rules:\n- {id: r, when: {product: {eq: login}}, decision: escalate}\n")
    local = runner_for(with_target(tiny_project, cache=False)).run(cases, config)
    ray_runner = runner_for(with_target(tiny_project, runner="ray", cache=False))
    done = []
    assert ray_runner.run(cases, config, done.append) == local
    assert done == [1000, 1000, 400]
    assert local_ray.cluster_resources().get("CPU") == 1


def test_the_ray_runner_fails_past_the_error_share_and_cancels_the_chunks_left(tiny_project, local_ray):
    ray_runner = runner_for(with_target(tiny_project, runner="ray", cache=False, max_error_share=0.1))
    done = []
    with pytest.raises(RunFailedError, match="more than target.max_error_share"):
        ray_runner.run([{"boom": True, "minutes": 1}] * 5000, tiny_project / "config", done.append)
    assert done == [], "it fails on the first chunk's errors, not after deciding all five"


def test_the_answers_of_runs_batched_together_are_kept_in_one_transaction(tiny_project):
    from improver.runners import run_many

    runner = runner_for(with_target(tiny_project))
    commits = []
    runner.cache.db.set_trace_callback(lambda statement: commits.append(statement) if statement == "COMMIT" else None)
    cases = [{"minutes": m} for m in range(5, 60, 3)]
    answers = run_many(runner, [(cases[:5], tiny_project / "config"), (cases[5:], tiny_project / "config"), (cases, tiny_project / "config")])
    assert [len(a) for a in answers] == [5, len(cases) - 5, len(cases)] and len(commits) == 1
    runner.close()


def test_an_answer_of_plain_strings_is_normalised_as_any_answer_is():
    from improver.runners import _normalised, normalise

    plain = {"decision": "approve", "confidence": "high", "reasoning": "within budget", "cited": ["policy:tiers"]}
    answers = [plain, dict(plain, confidence=0.9), dict(plain, confidence=None), dict(plain, confidence=True),
               dict(plain, confidence=[1]), dict(plain, cited="policy:tiers"), dict(plain, cited=None), dict(plain, cited=[1, "a"]),
               dict(plain, cited=("a", "b")), dict(plain, reasoning=None), dict(plain, reasoning=7), dict(plain, decision="  "),
               dict(plain, decision=""), dict(plain, decision=3), dict(plain, reasoning="caf\u00e9 \ud800"),
               dict(plain, cited=["\ud800"]), dict(plain, decision="r\u00e9ject"), dict(plain, confidence="\ud83d"),
               {"decision": "approve"}, {"error": "boom"}, {"decision": "ok", "extra": 1}, "approve", None, [plain]]
    for answer in answers:
        assert normalise(answer) == _normalised(answer), answer
    assert normalise(plain)["cited"] is not plain["cited"]  # its own list, as the parent keeps it


def test_a_baseline_the_cache_cannot_answer_has_its_workers_started_before_the_sessions_are_read(tiny_project):
    """Its workers import the target meanwhile; the run then uses them, and a baseline the cache
    answers (the second cycle) starts none."""
    first = Workspace(tiny_project)
    first.ingest(str(tiny_project / "traces.jsonl"))
    first.start_target()
    started = [w.process.pid for w in first.runner.inner._workers]
    assert len(started) == 1 and "sessions" not in first.__dict__
    first.baseline()
    assert [w.process.pid for w in first.runner.inner._workers] == started and first.runner.reruns == 80
    first.runner.close()
    second = Workspace(tiny_project)
    second.start_target()
    assert second.runner.inner._workers == []
    second.baseline()
    assert second.runner.reruns == 0 and second.runner.inner._workers == []


def test_the_cache_finds_a_case_it_saw_by_its_content_even_if_it_is_another_object(tiny_project):
    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    cases = [s.case for s in ws.sessions]
    keys = ws.runner.keys(cases)
    assert ws.runner.keys(cases) == keys == ws.runner.keys([dict(c) for c in cases])
    assert ws.runner.keys([dict(cases[0], minutes=999)]) != keys[:1]
    assert ws.subset_runner.case_keys is ws.runner.case_keys  # leave-one-out reruns find the same cases' keys


def test_building_the_cycle_graph_reads_no_sessions(tiny_project):
    """LangGraph evaluates the attributes a node reads when it compiles the graph: the sessions
    must be read in the baseline node, after the target's workers have started."""
    from improver.cycle import build_graph

    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    build_graph(ws)
    assert "sessions" not in ws.__dict__
