"""Speed by construction: what the hot paths avoid (imports, re-reads); timings live in bench/."""
from __future__ import annotations

import subprocess
import sys

import pytest

MINE_TAGGED_ONLY = """
import sys
from improver.mining import mine
from improver.models import ReviewedSession
sessions = [ReviewedSession(session_id=f"s{i}", case={"vendor": "AB"[i % 2], "amount": 100.0 * i}, agent_decision="approve",
                            human_decision="reject" if i % 2 else "approve", human_reasoning="over budget",
                            precedent="budget" if i % 2 else "agree") for i in range(40)]
result = mine(sessions, min_evidence=3)
assert result.precedents, result
print("sklearn" in sys.modules, "scipy.cluster" in sys.modules)
"""


def test_mining_imports_neither_scikit_learn_nor_scipy_unless_notes_need_clustering():
    out = subprocess.run([sys.executable, "-c", MINE_TAGGED_ONLY], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_a_rerun_keeps_its_decisions_instead_of_reading_back_the_file_it_wrote(tiny_project, monkeypatch):
    from improver.experiments import Experiment
    from improver.workspace import Workspace

    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    reads = []
    original = Experiment.decisions
    def reading(self):
        found = original.fget(self)
        if found is not None:
            reads.append(self.id)
        return found
    monkeypatch.setattr(Experiment, "decisions", property(reading))
    baseline = ws.baseline()  # runs, writes decisions.jsonl and scores
    child = ws.propose(baseline, ws.mine(baseline), cycle=1)
    ws.score(child)
    assert reads == []  # only "is it already decided?" (no), never a read-back of what was just written
    assert (child.path / "decisions.jsonl").read_text().splitlines()[0].startswith('{"session_id":')
    fresh = Workspace(tiny_project)
    assert fresh.run(child) == ws.run(child)  # what was kept is what a later command reads


CLUSTER_NOTES = """
import sys
from improver import text
if sys.argv[1] == "prefetch":
    text.prefetch()
    text._imported()
    assert "scipy.cluster.hierarchy" in sys.modules  # imported by the background thread, before any clustering
notes = ["over budget again", "budget exceeded by far", "vendor not approved", "unapproved vendor used",
         "needs a manager", "manager sign-off missing", "over budget", "vendor is not on the list"] * 3
tagged = {"budget": ["over budget", "exceeds the budget"], "vendor": ["vendor not approved"]}
print(text.cluster_notes(notes), text.assign_to_precedents(tagged, notes), "sklearn" in sys.modules)
"""


def test_scipy_imported_ahead_in_the_background_gives_the_same_clusters_and_scikit_learn_is_never_imported():
    runs = [subprocess.run([sys.executable, "-c", CLUSTER_NOTES, mode], capture_output=True, text=True, check=True).stdout
            for mode in ("prefetch", "plain")]
    assert runs[0] == runs[1] and "budget" in runs[0] and runs[0].strip().endswith("False")


def test_a_workers_pipes_hold_a_whole_chunk_and_its_answers_are_the_same(tiny_project):
    """Handing a chunk to one worker does not wait for that worker to read it (1 MB pipes on
    Linux), and the answers are those of the agent called in this process."""
    import fcntl
    import pickle

    from improver.project import Project
    from improver.runners.local import CHUNK, CallableRunner

    project = Project.load(tiny_project)
    runner = CallableRunner(project.config.target, project.root)
    cases = [{"minutes": m, "product": f"p{m % 3}", "note": f"case {m} " + "x" * 200} for m in range(5000)]
    try:
        answers = runner.run(cases, tiny_project / "config")
        chunk = len(pickle.dumps((cases[:CHUNK], str(tiny_project / "config"), True)))
        for worker in runner._workers:
            assert fcntl.fcntl(worker._send.fileno(), 1032) >= chunk  # F_GETPIPE_SZ
            assert fcntl.fcntl(worker.conn.fileno(), 1032) >= chunk
    finally:
        runner.close()
    sys.path.insert(0, str(tiny_project))
    try:
        from triage_agent import decide
    finally:
        sys.path.remove(str(tiny_project))
    assert [a["decision"] for a in answers] == [decide(c, tiny_project / "config")["decision"] for c in cases]


def test_a_batchs_equal_reasonings_reach_the_parent_as_one_string_each(tmp_path):
    """Texts an agent builds anew for every case are equal but separate objects: the worker
    sends each once a chunk, so the parent keeps one copy per chunk instead of one per case."""
    from improver.project import TargetSpec
    from improver.runners.local import CHUNK, CallableRunner

    (tmp_path / "wordy_agent.py").write_text(
        "def decide(case, config_dir):\n"
        "    return decide_batch([case], config_dir)[0]\n"
        "def decide_batch(cases, config_dir):\n"
        "    return [{'decision': 'approve', 'reasoning': ' '.join(['within', 'budget'] * 25), 'cited': [':'.join(['policy', 'tiers'])]}\n"
        "            for case in cases]\n")
    runner = CallableRunner(TargetSpec(callable="wordy_agent:decide", config="config"), tmp_path)
    try:
        answers = runner.run([{"n": i} for i in range(3 * CHUNK)], tmp_path)
    finally:
        runner.close()
    assert {a["reasoning"] for a in answers} == {" ".join(["within", "budget"] * 25)}
    assert len({id(a["reasoning"]) for a in answers}) == 3
    assert len({id(a["cited"][0]) for a in answers}) == 3


def test_sessions_read_from_the_store_share_one_object_for_each_equal_short_text(tiny_project, monkeypatch):
    """A field's values are parsed anew for every case: the store hands over one object per equal short
    text (values, decisions, reviewers), so each column pass reads a few objects. Long texts, and a
    field whose texts all differ in the first sessions read (an id), are left as they are."""
    import improver.store
    from improver.workspace import Workspace

    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    logins = [s for s in Workspace(tiny_project).sessions if s.case["product"] == "login"]
    assert len(logins) == 20
    for field in ("product", "text"):
        assert len({id(s.case[field]) for s in logins}) == 1, field
    assert len({id(s.human_decision) for s in logins}) == len({id(s.reviewer) for s in logins}) == 1
    long_text = "x" * 201
    with ws.store() as store:
        store.db.execute("UPDATE decisions SET case_json = json_set(case_json, '$.text', ?)", (long_text,))
        store.db.execute("UPDATE decisions SET case_json = json_set(case_json, '$.ticket', 'T-late') "
                         "WHERE session_id NOT IN (SELECT session_id FROM decisions ORDER BY session_id LIMIT 10)")
        store.db.commit()
    monkeypatch.setattr(improver.store, "SHARED_SAMPLE", 10)
    sessions = Workspace(tiny_project).sessions
    texts = [s.case["text"] for s in sessions]
    assert texts == [long_text] * 80 and len(set(map(id, texts))) == 80
    late = [s.case["ticket"] for s in sessions[10:]]
    assert late == ["T-late"] * 70 and len(set(map(id, late))) == 70, "ids differ in the first ten: not shared"
    assert len({id(s.case["product"]) for s in sessions[10:] if s.case["product"] == "login"}) == 1


def test_a_cycles_minings_take_the_case_fields_from_the_columns_the_workspace_read_once(tiny_project, monkeypatch):
    """Each fold's mining and the refit read their cases' fields from the workspace's columns (gathered
    at their rows), not in a pass of their own over the cases; and they find what they found before."""
    from improver import features, mining
    from improver.cycle import run_cycles
    from improver.workspace import Workspace

    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    parent, config = ws.baseline(), ws.project.config
    train, decisions = [ws.sessions[i] for i in ws.train_indices.tolist()], ws.run(parent)
    alone = mining.mine(train, [decisions[s.session_id] for s in train], bands=config.bands,
                        min_evidence=config.min_evidence, entity_fields=config.entity_fields).model_dump()
    passes = []
    original = features.shared_columns
    monkeypatch.setattr(features, "shared_columns", lambda cases: passes.append(len(cases)) or original(cases))
    monkeypatch.setattr(mining, "shared_columns", features.shared_columns)
    assert ws.mine(parent).model_dump() == alone
    run_cycles(ws, max_cycles=1)
    assert passes == [len(ws.sessions)], "one pass, over every session, for the workspace's columns"


def test_a_worker_keeps_what_loading_the_agent_made_out_of_the_collectors_passes_and_still_collects(tmp_path):
    """A worker freezes the objects its imports made (at 100k cases the collector walking them took a
    fifth of the workers' CPU); the collector stays on, so cycles an agent makes are still freed."""
    from improver.project import TargetSpec
    from improver.runners.local import CallableRunner

    (tmp_path / "gc_agent.py").write_text(
        "import gc\n"
        "def decide(case, config_dir):\n"
        "    return {'decision': 'approve', 'reasoning': f'{gc.get_freeze_count()} {gc.isenabled()}'}\n")
    runner = CallableRunner(TargetSpec(callable="gc_agent:decide", config="config"), tmp_path)
    try:
        frozen, collecting = runner.run([{"n": 1}], tmp_path)[0]["reasoning"].split()
    finally:
        runner.close()
    assert int(frozen) > 1000 and collecting == "True"


def test_a_cycle_runs_with_the_cyclic_collector_paused_and_gives_it_back(tiny_project, monkeypatch):
    import gc

    from improver.cycle import run_cycles
    from improver.workspace import Workspace

    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    seen = []
    original = Workspace.score
    def scoring(self, experiment, *args, **kwargs):
        seen.append(gc.isenabled())
        return original(self, experiment, *args, **kwargs)
    monkeypatch.setattr(Workspace, "score", scoring)
    assert gc.isenabled()
    run_cycles(ws, max_cycles=1)
    assert seen and not any(seen)  # every stage ran without collector passes over its rows
    assert gc.isenabled()
    gc.disable()
    try:
        run_cycles(ws, max_cycles=1)
        assert not gc.isenabled()  # a caller's own pause is kept
    finally:
        gc.enable()


def test_cases_go_to_the_workers_as_json_and_reach_the_agent_as_they_were(tmp_path):
    """A chunk of plain JSON cases is sent as orjson bytes (not pickled dict by dict); a case holding a
    value JSON has no type for (a date) is sent pickled, so the agent sees the same values either way."""
    import datetime

    from improver.project import TargetSpec
    from improver.runners.local import CallableRunner, _packed

    (tmp_path / "echo_agent.py").write_text(
        "def decide(case, config_dir):\n"
        "    return {'decision': 'approve', 'reasoning': repr(sorted(case.items()))}\n")
    plain = [{"n": i, "amount": 1.5 * i, "tags": ["a", "b"], "nested": {"ok": True, "none": None}} for i in range(3)]
    dated = [{"n": 1, "submitted": datetime.date(2026, 1, 2)}]
    assert type(_packed(plain)) is bytes and _packed(dated) is dated
    runner = CallableRunner(TargetSpec(callable="echo_agent:decide", config="."), tmp_path)
    try:
        for cases in (plain, dated):
            assert [a["reasoning"] for a in runner.run(cases, tmp_path)] == [repr(sorted(c.items())) for c in cases]
    finally:
        runner.close()


# atexit runs its handlers last-registered first: this one, registered before main, runs after main's
CLI_EXIT = """
import atexit, gc, sys
import improver.cli.app
cli = sys.modules["improver.cli.app"]
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
app = cli.app
def command(*args, **kwargs):  # the collector while the command runs
    print("collecting:", gc.isenabled())
    return app(*args, **kwargs)
cli.app = command
sys.argv = ["improver", *sys.argv[2:], "--project", sys.argv[1]]
cli.main()
"""


def test_the_cli_freezes_what_it_loaded_before_the_interpreter_exits(tiny_project):
    # the interpreter's last collections then walk nothing a command loaded (~0.4 s after a small cycle)
    done = subprocess.run([sys.executable, "-c", CLI_EXIT, str(tiny_project), "log"], capture_output=True, text=True)
    assert "frozen at exit: True" in done.stdout, done.stdout + done.stderr


def test_a_cli_command_runs_without_the_cyclic_collector_and_the_mcp_server_keeps_it(tiny_project):
    # a one-shot command's collections over a 100k-session cycle's rows free next to nothing; a server runs on
    for command, collecting in (("log", False), ("serve", True)):
        done = subprocess.run([sys.executable, "-c", CLI_EXIT, str(tiny_project), command], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=120)
        assert f"collecting: {collecting}" in done.stdout, done.stdout + done.stderr


def test_main_in_a_longer_process_gives_the_collector_back_as_it_was(tiny_project, monkeypatch, capsys):
    import gc

    from improver.cli.app import main

    monkeypatch.setattr(sys, "argv", ["improver", "log", "--project", str(tiny_project)])
    assert gc.isenabled()
    with pytest.raises(SystemExit):
        main()
    assert gc.isenabled()


PID_AGENT = ("import os, time\n"
             "def decide(case, config_dir):\n"
             "    time.sleep(case['sleep'])\n"
             "    return {'decision': 'approve', 'reasoning': str(os.getpid())}\n")


def test_a_run_starts_another_worker_only_when_the_cases_left_outlast_its_start_up(tmp_path):
    """A second worker imports the target before it decides anything: for a few thousand quick cases
    one worker is done first; for cases slow enough, the second starts and takes its share."""
    from improver.project import TargetSpec
    from improver.runners.local import PARALLEL_FROM, CallableRunner

    (tmp_path / "pid_agent.py").write_text(PID_AGENT)
    runner = CallableRunner(TargetSpec(callable="pid_agent:decide", config=".", workers=2), tmp_path)
    try:
        quick = runner.run([{"sleep": 0}] * PARALLEL_FROM, tmp_path)
        assert len(runner._workers) == 1 and len({a["reasoning"] for a in quick}) == 1
        slow = runner.run([{"sleep": 0.003}] * PARALLEL_FROM, tmp_path)
        assert len(runner._workers) == 2 and len({a["reasoning"] for a in slow}) == 2
    finally:
        runner.close()


def test_prepare_starts_every_worker_a_run_can_use_and_start_only_one(tmp_path):
    from improver.project import TargetSpec
    from improver.runners.local import PARALLEL_FROM, CallableRunner

    (tmp_path / "pid_agent.py").write_text(PID_AGENT)
    runner = CallableRunner(TargetSpec(callable="pid_agent:decide", config=".", workers=3), tmp_path)
    try:
        runner.start(tmp_path, PARALLEL_FROM)
        assert len(runner._workers) == 1
        runner.prepare(PARALLEL_FROM - 1)
        assert len(runner._workers) == 1, "a run this small uses one worker"
        runner.prepare(PARALLEL_FROM)
        assert len(runner._workers) == 3
        answers = runner.run([{"sleep": 0}] * 10, tmp_path)
        assert {a["decision"] for a in answers} == {"approve"}
    finally:
        runner.close()


def test_a_rerun_hands_each_slice_of_answers_to_its_caller_as_it_comes_and_every_answer_once(tiny_project):
    """The caller's work on answers (the decisions file, the cache's row) overlaps the target's work on
    the rest: a slice a chunk as the workers answer, before the run ends; through the decision cache too,
    and a run the cache answers whole comes as one list."""
    from improver.project import Project
    from improver.runners import run_many, runner_for
    from improver.runners.local import CHUNK

    project = Project.load(tiny_project)
    runner = runner_for(project)
    cases = [{"minutes": m % 60, "product": f"p{m % 3}"} for m in range(3 * CHUNK + 7)]
    slices: list[tuple[int, int, list]] = []
    try:
        answers = run_many(runner, [(cases, tiny_project / "config")], answered=lambda job, start, found: slices.append((job, start, found)))[0]
        covered = sorted(start + k for _, start, found in slices for k in range(len(found)))
        assert covered == list(range(len(cases))) and len(slices) > 1  # this agent answers case by case
        assert all(job == 0 and found == answers[start:start + len(found)] for job, start, found in slices)
        slices.clear()
        again = run_many(runner, [(cases, tiny_project / "config")], answered=lambda job, start, found: slices.append((job, start, found)))[0]
    finally:
        runner.close()
    assert runner.hits == len(cases) and again == answers
    assert slices == [(0, 0, answers)]


def test_a_leak_in_any_slice_of_a_rerun_writes_no_decisions_file(tiny_project):
    """A rerun's decisions file is scanned slice by slice as answers come; a leak in the last slice
    still leaves no file at all, and the error names the line."""
    from improver.experiments import DecisionsFile, ExperimentStore, Manifest, now
    from improver.leakscan import LeakError, LeakScan

    store = ExperimentStore(tiny_project / "experiments", LeakScan())
    experiment = store.create(Manifest(id=store.next_id("baseline"), created=now(), kind="baseline"), {}, {}, "# Baseline\n")
    file = DecisionsFile(experiment)
    rows = [{"session_id": f"S{i}", "decision": "approve", "reasoning": "Fine.", "cited": []} for i in range(30)]
    rows[25]["reasoning"] = "Call 415-555-0132 first."
    for start in (20, 0, 10):  # slices come in any order
        file.add(start, rows[start:start + 10])
    with pytest.raises(LeakError, match=r"decisions.jsonl: .*\(line 26\)"):
        file.write()
    assert not (experiment.path / "decisions.jsonl").exists()
    rows[25]["reasoning"] = "Fine."
    file = DecisionsFile(experiment)
    for start in (20, 0, 10):
        file.add(start, rows[start:start + 10])
    file.write()
    assert list(experiment.decisions) == [f"S{i}" for i in range(30)]  # in the sessions' order


def _candidate(project):
    from improver.workspace import Workspace

    ws = Workspace(project)
    ws.ingest(str(project / "traces.jsonl"))
    parent = ws.baseline()
    cv = ws.cross_validate(parent)
    return ws, ws.propose(parent, cv.result, 1, cv=cv)


def test_a_candidates_leave_one_out_reruns_are_queued_behind_its_own_rerun_in_one_batch(tiny_project, tmp_path,
                                                                                       monkeypatch):
    import shutil

    from improver import workspace
    from improver.workspace import Workspace

    alone = shutil.copytree(tiny_project, tmp_path / "alone")
    batches = []
    original = workspace.run_many
    def recording(runner, jobs, progress=None, answered=None):
        batches.append(len(jobs))
        return original(runner, jobs, progress, answered)
    monkeypatch.setattr(workspace, "run_many", recording)
    ws, candidate = _candidate(tiny_project)
    batches.clear()
    together = ws.score(candidate)["per_proposal"]
    assert batches[0] == 1 + len(candidate.manifest.proposals)  # the workers went straight on to them
    assert all(effect["sessions_matched"] for effect in together.values())

    monkeypatch.setattr(Workspace, "streams_answers", lambda self, config_dir: False)  # a runner that does not stream
    ws, candidate = _candidate(alone)
    batches.clear()
    assert ws.score(candidate)["per_proposal"] == together  # the same effects, from a batch of their own
    assert batches[:2] == [1, len(candidate.manifest.proposals)]
