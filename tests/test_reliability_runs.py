"""Runs you can trust: the target runs isolated, under a strict execution contract.

Real agents in real worker processes and real commands on small data: a checkpointing
LangGraph agent inside improver's own LangGraph cycle, agents that raise, exit, crash
and hang, commands that break the JSONL protocol, an all-failing agent through the CLI,
and the parent killed with SIGKILL.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from improver.cycle import run_cycles
from improver.errors import RunFailedError, TargetError
from improver.project import TargetSpec
from improver.runners.command import CommandRunner
from improver.runners.local import CallableRunner
from improver.workspace import Workspace

LANGGRAPH_AGENT = '''
import operator
from typing import Annotated, TypedDict
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

class State(TypedDict, total=False):
    visits: Annotated[int, operator.add]
    minutes: int
    decision: str

def step(state):
    return {"visits": 1, "decision": "escalate" if state["minutes"] > 30 else "resolve"}

builder = StateGraph(State)
builder.add_node("step", step)
builder.add_edge(START, "step")
builder.add_edge("step", END)
remembering = builder.compile(checkpointer=InMemorySaver())
stateless = builder.compile()

def decide(case, config_dir):
    inherited = var_child_runnable_config.get() is not None
    thread = {"configurable": {"thread_id": case["ticket"]}}
    before = len(list(remembering.checkpointer.list(thread)))
    out = remembering.invoke({"minutes": case["minutes"]}, thread)
    plain = stateless.invoke({"minutes": case["minutes"]}, {"configurable": {"model": None}})
    return {"decision": out["decision"], "confidence": "high",
            "reasoning": f"inherited={inherited} visits={out['visits']} before={before} plain={plain['decision']}"}
'''


def write_agent(project: Path, body: str, name: str = "triage_agent") -> None:
    (project / f"{name}.py").write_text(body)
    (project / "improver.yaml").write_text(
        f"target:\n  callable: {name}:decide\n  config: config\n  timeout: 2\nentity_fields: [product]\n"
        "bands:\n  minutes: [30]\nholdout: 0.25\n")


def ingested(project: Path) -> Workspace:
    ws = Workspace(project)
    ws.ingest(str(project / "traces.jsonl"))
    return ws


def runner(tmp_path: Path, body: str, **spec) -> CallableRunner:
    (tmp_path / "agent_under_test.py").write_text(body)
    return CallableRunner(TargetSpec(callable="agent_under_test:decide", config=".", **spec), tmp_path)


def test_a_checkpointing_langgraph_agent_behaves_inside_a_cycle_as_when_called_directly(tiny_project):
    write_agent(tiny_project, LANGGRAPH_AGENT)
    ws = ingested(tiny_project)
    run_cycles(ws, max_cycles=1)
    baseline = ws.experiments.get(ws.experiments.ids()[0])
    inside = {sid: row["reasoning"] for sid, row in baseline.decisions.items()}

    # the same agent, called directly from a fresh interpreter, in the same order
    direct = subprocess.run([sys.executable, "-c", (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import triage_agent\n"
        "cases = json.loads(sys.stdin.read())\n"
        "print(json.dumps([triage_agent.decide(c, sys.argv[1])['reasoning'] for c in cases]))"), str(tiny_project)],
        input=json.dumps([s.case for s in ws.sessions]), capture_output=True, text=True)
    assert direct.returncode == 0, direct.stderr
    assert dict(zip([s.session_id for s in ws.sessions], json.loads(direct.stdout))) == inside
    assert all(r.startswith("inherited=False visits=1 before=0") for r in inside.values())

    store = sqlite3.connect(tiny_project / ".improver" / "checkpoints.sqlite")
    namespaces = {ns for (ns,) in store.execute("select distinct checkpoint_ns from checkpoints")}
    assert namespaces == {""}  # the agent's own states never land in improver's checkpoint store


def test_each_failing_case_gets_an_error_with_its_reason_and_the_run_goes_on(tmp_path):
    run = runner(tmp_path, (
        "import ctypes, os, sys, time\n"
        "def decide(case, config_dir):\n"
        "    how = case['how']\n"
        "    if how == 'raise': raise ValueError('no such vendor')\n"
        "    if how == 'exit': sys.exit(3)\n"
        "    if how == 'os_exit': os._exit(4)\n"
        "    if how == 'segfault': ctypes.string_at(0)\n"
        "    if how == 'hang': time.sleep(60)\n"
        "    if how == 'odd': return {'decision': 'ok', 'cited': {'policy:\\udcff'}, 'confidence': object()}\n"
        "    return {'decision': 'ok', 'reasoning': how}\n"), timeout=1, max_error_share=1)
    hows = ["fine", "raise", "exit", "os_exit", "fine", "segfault", "hang", "odd", "fine"]
    answers = run.run([{"how": h} for h in hows], tmp_path)
    why = {h: a.get("error") for h, a in zip(hows, answers)}
    assert why["raise"] == "ValueError: no such vendor"
    assert why["exit"] == "the target called sys.exit(3)"
    assert "exited with code 4" in why["os_exit"] and "on this case" in why["os_exit"]
    assert "killed by SIGSEGV" in why["segfault"]
    assert why["hang"] == "timed out after 1 s (target.timeout in improver.yaml)"
    assert [a["decision"] for h, a in zip(hows, answers) if h == "fine"] == ["ok"] * 3
    odd = answers[hows.index("odd")]
    assert odd["cited"] == ["policy:\\udcff"] and isinstance(odd["confidence"], str)
    json.dumps(odd).encode("utf-8")
    run.close()


def test_a_batch_that_crashes_is_retried_case_by_case_to_find_the_case(tmp_path):
    run = runner(tmp_path, (
        "import os\n"
        "def decide(case, config_dir):\n"
        "    if case['n'] == 3: os._exit(9)\n"
        "    return {'decision': str(case['n'])}\n"
        "def decide_batch(cases, config_dir):\n"
        "    return [decide(c, config_dir) for c in cases]\n"), max_error_share=1)
    answers = run.run([{"n": n} for n in range(6)], tmp_path)
    assert [a["decision"] for a in answers] == ["0", "1", "2", "error", "4", "5"]
    assert "exited with code 9" in answers[3]["error"]
    run.close()


def test_a_worker_gets_its_next_batch_while_on_one_and_a_crash_loses_neither(tmp_path, monkeypatch):
    import improver.runners.local as local

    monkeypatch.setattr(local, "CHUNK", 5)
    sent_while_busy = []
    give = local._Worker.give
    def recording(self, task, config_dir, timeout):
        sent_while_busy.append(self.task is not None)
        return give(self, task, config_dir, timeout)
    monkeypatch.setattr(local._Worker, "give", recording)
    run = runner(tmp_path, (
        "import os\n"
        "def decide(case, config_dir):\n"
        "    if case['n'] == 12: os._exit(9)\n"
        "    return {'decision': str(case['n'])}\n"
        "def decide_batch(cases, config_dir):\n"
        "    return [decide(c, config_dir) for c in cases]\n"), max_error_share=1, workers=1)
    answers = run.run([{"n": n} for n in range(40)], tmp_path)
    assert [a["decision"] for a in answers] == [str(n) if n != 12 else "error" for n in range(40)]
    assert "exited with code 9" in answers[12]["error"]
    assert any(sent_while_busy)  # batches waited in the worker's pipe while it was on one
    run.close()


def test_a_run_stops_early_once_errors_pass_the_share(tmp_path):
    run = runner(tmp_path, "def decide(case, config_dir):\n    raise RuntimeError('down')\n", max_error_share=0.2)
    with pytest.raises(RunFailedError) as failed:
        run.run([{"n": n} for n in range(50)], tmp_path)
    assert failed.value.errors == 11 and "case 1: RuntimeError: down" in str(failed.value)
    run.close()


def test_a_candidate_that_fails_stops_before_the_leave_one_out_reruns_queued_behind_it(tiny_project):
    ws = ingested(tiny_project)
    parent = ws.baseline()
    cv = ws.cross_validate(parent)
    candidate = ws.propose(parent, cv.result, 1, cv=cv)
    write_agent(tiny_project, (
        "from pathlib import Path\n"
        "def decide(case, config_dir):\n"
        "    if (Path(config_dir) / 'learned_rules.yaml').exists():\n"
        "        raise RuntimeError('cannot read the learned rules')\n"
        "    return {'decision': 'resolve'}\n"))
    ws = Workspace(tiny_project)  # a new process: the changed agent, no answer kept
    asked = []
    ws.progress = lambda label, done, total: asked.append((done, total))
    with pytest.raises(RunFailedError) as failed:
        ws.score(ws.experiments.get(candidate.id))
    assert "the target failed on 17 of 80 cases" in " ".join(str(failed.value).split())
    done, total = asked[-1]
    assert done <= 80 < total  # its rerun's answers, none of the reruns behind it
    assert not (candidate.path / "decisions.jsonl").exists() and not (candidate.path / "results.json").exists()


def test_an_all_failing_agent_exits_non_zero_records_nothing_and_is_retried_later(tiny_project):
    write_agent(tiny_project, (
        "from pathlib import Path\n"
        "def decide(case, config_dir):\n"
        "    if Path(__file__).with_name('DOWN').exists():\n"
        "        raise RuntimeError('model endpoint down')\n"
        "    return {'decision': 'resolve'}\n"))
    (tiny_project / "DOWN").write_text("")
    cli = [sys.executable, "-m", "improver.cli"]
    subprocess.run(cli + ["ingest", str(tiny_project / "traces.jsonl"), "-p", str(tiny_project)], check=True,
                   capture_output=True)
    failed = subprocess.run(cli + ["cycle", "-p", str(tiny_project)], capture_output=True, text=True)
    message = " ".join(failed.stderr.split())
    assert failed.returncode == 2
    assert "the target failed on 17 of 80 cases" in message and ": RuntimeError: model endpoint down" in message
    assert "Traceback" not in failed.stderr
    (baseline,) = (tiny_project / "experiments").iterdir()
    assert not (baseline / "decisions.jsonl").exists() and not (baseline / "results.json").exists()

    (tiny_project / "DOWN").unlink()  # the outage is over: the same baseline is run again, not reused as scored
    fixed = subprocess.run(cli + ["cycle", "-p", str(tiny_project), "--max-cycles", "1"], capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stderr
    assert Workspace(tiny_project).experiments.get(baseline.name).results["errors"]["count"] == 0


def test_reruns_are_keyed_by_config_target_and_agent_code_and_forced_by_rerun(tiny_project):
    ws = ingested(tiny_project)
    first = ws.baseline()
    assert Workspace(tiny_project).baseline().id == first.id  # same config, target and code: found
    assert first.manifest.mining["target"] == ws.target_key
    agent = tiny_project / "triage_agent.py"
    agent.write_text(agent.read_text() + "\n# a change to the agent's code\n")
    changed = Workspace(tiny_project).baseline()
    assert changed.id != first.id and changed.results is not None
    versioned = tiny_project / "improver.yaml"
    versioned.write_text(versioned.read_text().replace("  config: config\n", "  config: config\n  version: '2'\n"))
    assert Workspace(tiny_project).baseline().id not in (first.id, changed.id)
    forced = Workspace(tiny_project, rerun=True)
    again = forced.baseline()
    assert again.id not in (first.id, changed.id) and forced.runner.hits == 0 and again.results is not None
    rerun = subprocess.run([sys.executable, "-m", "improver.cli", "score", again.id, "--rerun", "-p", str(tiny_project)],
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    copy = Workspace(tiny_project).experiments.all()[-1]
    assert copy.manifest.mining["rerun_of"] == again.id and copy.results is not None


def command_runner(tmp_path: Path, script: str, **spec) -> CommandRunner:
    (tmp_path / "cmd_agent.py").write_text(script)
    return CommandRunner(TargetSpec(command=[sys.executable, "cmd_agent.py", "{config_dir}"], config=".", **spec), tmp_path)


ECHO = "import json, sys\nfor line in sys.stdin:\n    case = json.loads(line)\n"


def test_a_stray_stdout_line_from_a_command_stops_the_run_naming_the_line(tmp_path):
    run = command_runner(tmp_path, "print('loading model...')\n" + ECHO + "    print(json.dumps({'decision': 'ok'}))\n")
    with pytest.raises(TargetError, match=r"stdout line 1: 'loading model\.\.\.' is not a JSON object"):
        run.run([{"n": n} for n in range(5000)], tmp_path)


def test_a_command_that_writes_too_few_lines_and_exits_0_is_a_broken_protocol(tmp_path):
    run = command_runner(tmp_path, ECHO + "    if case['n'] < 2: print(json.dumps({'decision': 'ok'}))\n")
    with pytest.raises(TargetError, match="exited 0 after 2 answers for 4 cases"):
        run.run([{"n": n} for n in range(4)], tmp_path)


def test_command_errors_crashes_and_hangs_are_per_case(tmp_path):
    run = command_runner(tmp_path, "import time\n" + ECHO + (
        "    if case['n'] == 1: print(json.dumps({'error': 'vendor unknown'}), flush=True); continue\n"
        "    if case['n'] == 2: sys.exit(5)\n"
        "    if case['n'] == 4: time.sleep(60)\n"
        "    print(json.dumps({'decision': 'ok', 'cited': [1]}), flush=True)\n"), timeout=1, max_error_share=1)
    answers = run.run([{"n": n} for n in range(6)], tmp_path)
    assert [a["decision"] for a in answers] == ["ok", "error", "error", "ok", "error", "ok"]
    assert answers[1]["error"] == "target reported an error: vendor unknown"
    assert answers[2]["error"].startswith("target command exited with code 5 on this case")
    assert answers[4]["error"] == "timed out after 1 s (target.timeout in improver.yaml)"
    assert answers[0]["cited"] == ["1"]


def test_no_worker_outlives_a_parent_killed_with_sigkill(tmp_path):
    (tmp_path / "slow.py").write_text("import time\ndef decide(case, config_dir):\n    time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path\n"
        "from improver.project import TargetSpec\nfrom improver.runners.local import CallableRunner\n"
        "root = Path(sys.argv[1])\n"
        "CallableRunner(TargetSpec(callable='slow:decide', config='.', workers=2), root).run([{}] * 4000, root)\n"),
        str(tmp_path)])
    workers: list[int] = []
    for _ in range(200):
        workers = [int(p) for p in _children(parent.pid)]
        if len(workers) == 2:
            break
        time.sleep(0.1)
    assert len(workers) == 2
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)


def _children(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return out.split()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_the_checkpoint_store_keeps_only_the_latest_checkpoint_of_recent_runs(tiny_project):
    ws = ingested(tiny_project)
    for _ in range(3):
        run_cycles(ws, max_cycles=1)
    store = sqlite3.connect(tiny_project / ".improver" / "checkpoints.sqlite")
    per_run = store.execute("SELECT thread_id, COUNT(*) FROM checkpoints GROUP BY thread_id").fetchall()
    assert len(per_run) == 3 and all(n == 1 for _, n in per_run)
    assert store.execute("SELECT COUNT(*) FROM writes WHERE (thread_id, checkpoint_ns, checkpoint_id) NOT IN "
                         "(SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints)").fetchone() == (0,)


HOLD_LOCK = ("import sys, time\nfrom pathlib import Path\nfrom improver.lock import ProjectLock\n"
             "with ProjectLock(Path(sys.argv[1]) / '.improver')('improver cycle'):\n"
             "    print('held', flush=True)\n    sys.stdin.readline()\n")


def test_a_second_writer_refuses_naming_the_first_or_waits_for_it_while_readers_still_work(tiny_project):
    cli = [sys.executable, "-m", "improver.cli"]
    subprocess.run(cli + ["ingest", str(tiny_project / "traces.jsonl"), "-p", str(tiny_project)], check=True,
                   capture_output=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tiny_project)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    refused = subprocess.run(cli + ["cycle", "-p", str(tiny_project)], capture_output=True, text=True)
    assert refused.returncode == 2
    assert f"another improver command is writing to this project (pid {holder.pid}: improver cycle" in \
        " ".join(refused.stderr.split())
    assert subprocess.run(cli + ["log", "-p", str(tiny_project)], capture_output=True).returncode == 0  # a reader
    waited = subprocess.Popen(cli + ["cycle", "-p", str(tiny_project), "--max-cycles", "1", "--wait", "60"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waited.stderr.readline().startswith("waiting up to 60 s for the other writer")
    holder.communicate("go\n")
    out, errors = waited.communicate(timeout=300)
    assert waited.returncode == 0, errors


def test_two_concurrent_cycles_neither_crash_nor_duplicate_experiments(tiny_project):
    cli = [sys.executable, "-m", "improver.cli"]
    subprocess.run(cli + ["ingest", str(tiny_project / "traces.jsonl"), "-p", str(tiny_project)], check=True,
                   capture_output=True)
    both = [subprocess.Popen(cli + ["cycle", "-p", str(tiny_project), "--max-cycles", "2", "--wait", "120"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in both:
        out, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    manifests = [e.manifest for e in Workspace(tiny_project).experiments.all()]
    keys = [(m.parent, m.kind, m.cycle, m.mining.get("run"), m.config_hash) for m in manifests]
    assert len(keys) == len(set(keys))
    assert sum(m.kind == "baseline" for m in manifests) == 1


def test_a_damaged_experiment_is_named_and_skipped_and_truncated_decisions_count_as_not_run(tiny_project):
    import anyio
    from mcp import Client

    from improver.mcp import build_server

    ws = ingested(tiny_project)
    run_cycles(ws, max_cycles=1)
    ws.score(ws.rerun_of(ws.experiments.get(ws.experiments.ids()[0])))
    ids = ws.experiments.ids()
    baseline, candidate = ws.experiments.get(ids[0]), ws.experiments.get(ids[1])
    (candidate.path / "manifest.yaml").write_text("id: [unclosed\n")
    decisions = baseline.path / "decisions.jsonl"
    decisions.write_bytes(decisions.read_bytes()[:-40])  # cut mid-line
    (ws.experiments.get(ids[-1]).path / "results.json").write_text('{"train": {"agree')

    cli = [sys.executable, "-m", "improver.cli"]
    log = subprocess.run(cli + ["log", "-p", str(tiny_project)], capture_output=True, text=True)
    message = " ".join(log.stderr.split())
    assert log.returncode == 0 and "Traceback" not in log.stderr
    assert f"skipped {candidate.id}: experiment {candidate.id}: manifest.yaml is damaged (" in message
    assert f"skipped {ids[-1]}: experiment {ids[-1]}: results.json is damaged (JSONDecodeError" in message
    diff = subprocess.run(cli + ["diff", baseline.id, candidate.id, "-p", str(tiny_project)], capture_output=True, text=True)
    assert diff.returncode == 2 and "manifest.yaml is damaged" in diff.stderr and "Traceback" not in diff.stderr

    async def listed():
        async with Client(build_server(tiny_project)) as client:
            return (await client.call_tool("list_experiments", {})).structured_content
    listing = anyio.run(listed)
    assert candidate.id in listing["skipped"] and candidate.id not in [e["id"] for e in listing["experiments"]]

    again = Workspace(tiny_project)
    assert again.experiments.get(baseline.id).decisions is None  # truncated: not run yet
    rerun = again.run(again.experiments.get(baseline.id))
    assert len(rerun) == 80 and any(p.name.startswith("decisions.jsonl.damaged-") for p in baseline.path.iterdir())
    cycle = subprocess.run(cli + ["cycle", "-p", str(tiny_project), "--max-cycles", "1"], capture_output=True, text=True)
    assert cycle.returncode == 0, cycle.stderr


def test_resume_after_a_finished_run_returns_it_instead_of_starting_another(tiny_project):
    ws = ingested(tiny_project)
    done = run_cycles(ws, max_cycles=1)
    made = ws.experiments.ids()
    again = run_cycles(Workspace(tiny_project), max_cycles=1, resume=True)
    assert again["run_id"] == done["run_id"] and again["history"] == done["history"]
    assert ws.experiments.ids() == made


def test_a_few_errors_in_a_small_rerun_do_not_fail_it_but_an_all_failing_one_does():
    from improver.runners import ErrorBudget

    ok, failed = {"decision": "resolve"}, {"decision": "error", "error": "RuntimeError: flaky"}
    ErrorBudget.check([failed] * 4 + [ok] * 11, 0.2)  # a leave-one-out rerun of the 15 sessions one rule matches
    with pytest.raises(RunFailedError):
        ErrorBudget.check([failed] * 3, 0.2)
    with pytest.raises(RunFailedError):
        ErrorBudget.check([failed] * 7 + [ok] * 23, 0.2)
    ErrorBudget.check([failed] * 3, 1.0)  # the user allows every case to fail
