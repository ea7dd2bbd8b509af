"""One improvement cycle through the real CLI, each stage beside its floor.

    python bench/speed.py [--sessions 100000] [--repeat 1] [--keep FOLDER]

Makes a demo project with ``--sessions`` generated requests, then runs, each as its own
``improver`` process: ``improver ingest traces.jsonl``, ``improver cycle --max-cycles 1``,
and the same cycle again on the unchanged sessions. Each process is the CLI's own
``main`` with timers around the workspace stages (exclusive time: a rerun inside scoring
counts as a rerun); wall times are taken around the processes, so they include start-up; their CPU seconds (with
the target's workers) are printed beside the floors' CPU seconds, which a busy machine disturbs less.

Floors, measured in this process on the same data:
- ingest: ``json.loads`` of every line and ``executemany`` into the store's own schema;
- target reruns: the agent's own ``decide_batch`` in one process, each config loaded
  once, over all sessions for every experiment the cycle ran, plus every leave-one-out's
  matched sessions at that experiment's per-case cost;
- scoring: numpy agreement per split for every scored experiment.
The floors run without the cyclic collector. improver's modules and the examples are compiled to
bytecode first, as ``pip install`` does for an installed copy (an editable checkout has none, and
where PYTHONDONTWRITEBYTECODE is set each process would compile every module again). This
machine's speed drifts by up to a quarter from run to run (floors included): ``--repeat N`` runs it all N times, each on a fresh project with its own floors, and prints the median ratio.
Done means: ingest + cycle within 2x the sum of the floors and < 30 s; the second
cycle decides no case again, makes no new experiment and does not mine (it takes the experiment
mined from the same inputs). `bench/scale.py` has the per-store and 1M-session figures.
"""
from __future__ import annotations

import argparse
import compileall
import gc
import hashlib
import json
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]
STAGES = [("ingest", "ingest"), ("load sessions", None), ("target reruns", "reruns"), ("score (without reruns)", "scoring"),
          ("mine", None), ("cross-validate (without mine, reruns)", None), ("propose", None), ("write decisions", None),
          ("graph", None)]


# --- the timed CLI (child process) ----------------------------------------------------
class Timer:
    """Exclusive wall time per label: time inside a nested timed call goes to the inner label."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[float] = []

    def timed(self, function, label: str):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            self.stack.append(0.0)
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self.totals[label] += elapsed - self.stack.pop()
                if self.stack:
                    self.stack[-1] += elapsed
        return wrapper

    def wrap(self, owner, name: str, label: str) -> None:
        setattr(owner, name, self.timed(getattr(owner, name), label))


def timed_cli(out: Path, argv: list[str]) -> None:
    from improver.cli import main
    from improver.experiments import DecisionsFile
    from improver.workspace import Workspace

    timer = Timer()
    for name, label in (("ingest", "ingest"), ("decide", "target reruns"), ("decide_many", "target reruns"),
                        ("decide_with", "target reruns"),
                        ("_mine", "mine"), ("propose", "propose"),
                        ("cross_validate", "cross-validate (without mine, reruns)"),
                        ("subset", "propose"), ("score", "score (without reruns)"), ("graph", "graph")):
        timer.wrap(Workspace, name, label)
    timer.wrap(DecisionsFile, "write", "write decisions")  # what is left once the rerun's answers have come
    asked, asked_many, asked_with = Workspace.decide, Workspace.decide_many, Workspace.decide_with

    def decide(self, config_dir, sessions, label, **options):  # count the cases the target is asked to decide
        timer.totals["cases decided or answered from the cache"] += len(sessions)
        return asked(self, config_dir, sessions, label, **options)

    def decide_many(self, jobs, label):
        timer.totals["cases decided or answered from the cache"] += sum(len(sessions) for _, sessions in jobs)
        return asked_many(self, jobs, label)

    def decide_with(self, config_dir, sessions, label, answered, behind):
        timer.totals["cases decided or answered from the cache"] += len(sessions) + sum(len(few) for _, few in behind)
        return asked_with(self, config_dir, sessions, label, answered, behind)
    Workspace.decide, Workspace.decide_many, Workspace.decide_with = decide, decide_many, decide_with
    sessions = Workspace.__dict__["sessions"]  # a cached_property: time the one read of the store
    sessions.func = timer.timed(sessions.func, "load sessions")
    sys.argv = ["improver", *argv]
    try:
        main()
    finally:
        out.write_text(json.dumps(timer.totals))


def run_cli(folder: Path, *argv: str) -> dict:
    out = folder / f"timings-{time.monotonic_ns()}.json"
    started, cpu_started = time.perf_counter(), children_cpu()
    done = subprocess.run([sys.executable, __file__, "--timed", str(out), "--", *argv], capture_output=True, text=True)
    wall, cpu = time.perf_counter() - started, children_cpu() - cpu_started
    if done.returncode != 0:
        raise SystemExit(f"improver {' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return {"wall": wall, "cpu": cpu, "stages": json.loads(out.read_text()), "stdout": done.stdout}


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes: the CLI and its target workers."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- floors (this process) ------------------------------------------------------------
FLOOR_CPU: dict[str, float] = defaultdict(float)  # the floors' CPU seconds, over the same sections as their wall time


def ingest_floor(traces: Path, folder: Path) -> float:
    from improver.store import SCHEMA
    from improver.workspace import collector_paused

    db = sqlite3.connect(folder / "floor.sqlite")
    db.executescript(SCHEMA)
    gc.collect()
    with collector_paused():  # a floor is the least its work costs: no collector passes over this process's objects
        started, cpu_started = time.perf_counter(), time.process_time()
        decisions, reviews = [], []
        with open(traces, "rb") as lines:
            for line in lines:
                e = json.loads(line)
                if e["type"] == "decision":
                    decisions.append((e["session_id"], json.dumps(e["case"]), e["decision"], e.get("confidence"),
                                      e.get("reasoning"), json.dumps(e.get("cited")), e.get("config_version"), e.get("ts")))
                else:
                    reviews.append((e["session_id"], e.get("reviewer"), e["decision"], e.get("reasoning"), e.get("precedent"),
                                    json.dumps(e.get("conditions")), e.get("ts"), hashlib.sha256(line).hexdigest()))
        with db:
            db.executemany("INSERT INTO decisions (session_id, case_json, decision, confidence, reasoning, cited_json, "
                           "config_version, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", decisions)
            db.executemany("INSERT INTO reviews (session_id, reviewer, decision, reasoning, precedent, conditions_json, ts, "
                           "fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", reviews)
        seconds = time.perf_counter() - started
        FLOOR_CPU["ingest"] = time.process_time() - cpu_started
    db.close()
    return seconds


def rerun_and_scoring_floors(project: Path, ids: list[str], asked: int) -> tuple[float, float, list[str]]:
    """The agent's own batch time: each experiment's config over all sessions, and every other case the
    cycle asked for (leave-one-out, validation folds) at the cycle experiment's per-case cost."""
    import numpy as np

    from improver.runners.local import load_callable
    from improver.scoring import split_of
    from improver.workspace import Workspace, collector_paused

    ws = Workspace(project)
    sessions = ws.sessions
    cases = [s.case for s in sessions]
    _decide, decide_batch = load_callable(ws.project.config.target, ws.project.root)
    human = np.array([s.human_decision for s in sessions], dtype=object)
    heldout = np.array([split_of(s.session_id, ws.project.config.holdout) == "heldout" for s in sessions])
    reruns = scoring = 0.0
    notes = []
    for experiment in (ws.experiments.get(i) for i in ids):
        decide_batch(cases[:1], experiment.config_dir)  # config loaded once, outside the timing
        gc.collect()
        with collector_paused():  # no collector passes over the sessions this process holds (a quarter of the batch)
            started, cpu_started = time.perf_counter(), time.process_time()
            decide_batch(cases, experiment.config_dir)
            seconds = time.perf_counter() - started
            cpu_per_case = (time.process_time() - cpu_started) / len(cases)
        FLOOR_CPU["reruns"] += cpu_per_case * len(cases)
        reruns += seconds
        per_case = seconds / len(cases)
        notes.append(f"{experiment.id}: {seconds:.2f} s over {len(cases):,} sessions ({per_case * 1e6:.0f} us a case)")
        decided = experiment.decisions
        agent = np.array([decided[s.session_id]["decision"] for s in sessions], dtype=object)
        started, cpu_started = time.perf_counter(), time.process_time()
        agree = agent == human
        _ = (int(agree[heldout].sum()), int(agree[~heldout].sum()), int(agree.sum()))
        scoring += time.perf_counter() - started
        FLOOR_CPU["scoring"] += time.process_time() - cpu_started
    others = max(0, asked - len(ids) * len(cases))
    FLOOR_CPU["reruns"] += others * cpu_per_case
    notes.append(f"{others:,} other cases the cycle asked for, at {per_case * 1e6:.0f} us a case")
    return reruns + others * per_case, scoring, notes


# --- the report ------------------------------------------------------------------------
def measure(sessions: int, folder: Path, scratch: Path) -> dict:
    """One run: a fresh demo project, ingest, a cycle and a second cycle through the CLI, then the floors."""
    from improver.demo import make_demo_project

    FLOOR_CPU.clear()
    project = make_demo_project(folder, n=sessions)
    traces = project / "traces.jsonl"
    ingest = run_cli(scratch, "ingest", str(traces), "--project", str(project))
    first = run_cli(scratch, "cycle", "--max-cycles", "1", "--project", str(project))
    ids = experiment_ids(project)
    second = run_cli(scratch, "cycle", "--max-cycles", "1", "--project", str(project))
    second["made"] = len(experiment_ids(project)) - len(ids)
    floors = {"ingest": ingest_floor(traces, scratch)}
    asked = int(first["stages"].pop("cases decided or answered from the cache", 0))
    second["stages"].pop("cases decided or answered from the cache", None)
    floors["reruns"], floors["scoring"], notes = rerun_and_scoring_floors(project, ids, asked)
    stages = defaultdict(float, ingest["stages"])
    for name, seconds in first["stages"].items():
        stages[name] += seconds
    return {"stages": stages, "floors": floors, "notes": notes, "wall": ingest["wall"] + first["wall"],
            "cpu": ingest["cpu"] + first["cpu"], "floor_cpu": sum(FLOOR_CPU.values()), "second": second}


def experiment_ids(project: Path) -> list[str]:
    return sorted(p.name for p in (project / "experiments").iterdir() if p.is_dir() and p.name[:1].isdigit())


def report(run: dict, sessions: int) -> None:
    stages, floors, wall = run["stages"], run["floors"], run["wall"]
    print(f"\n== {sessions:,} reviewed sessions: improver ingest + improver cycle --max-cycles 1 ==")
    print(f"{'stage':38} {'seconds':>8} {'floor':>8} {'ratio':>6}")
    for label, floor_name in STAGES:
        floor = floors.get(floor_name) if floor_name else None
        shown = f"{floor:8.2f} {stages[label] / floor:6.1f}" if floor else ""
        print(f"{label:38} {stages[label]:8.2f} {shown}")
    other = wall - sum(stages[label] for label, _ in STAGES)
    print(f"{'other (start-up, imports, LangGraph)':38} {other:8.2f}")
    total_floor = sum(floors.values())
    print(f"{'sum of floors':38} {'':8} {total_floor:8.2f}")
    print(f"{'CLI wall, ingest + cycle':38} {wall:8.2f} {total_floor:8.2f} {wall / total_floor:6.1f}"
          f"   (done: ratio <= 2 and < 30 s)")
    print(f"{'CLI CPU (with workers), ingest + cycle':38} {run['cpu']:8.2f} {run['floor_cpu']:8.2f} "
          f"{run['cpu'] / run['floor_cpu']:6.1f}   (CPU seconds, which other work on the machine disturbs less)")
    for note in run["notes"]:
        print(f"  rerun floor {note}")
    second = run["second"]
    reuse = re.search(r"Target: ([\d,]+) cases decided, ([\d,]+) answered from the decision cache", second["stdout"])
    print(f"second cycle on unchanged sessions: {second['wall']:.2f} s wall; {second['made']} new experiments; "
          f"mining {second['stages'].get('mine', 0):.2f} s; "
          + (f"{reuse.group(1)} cases decided, {reuse.group(2)} answered from the decision cache" if reuse
             else "no reruns reported"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs, each on a fresh project with its own floors; the median ratio is printed")
    parser.add_argument("--keep", type=Path, help="make the project here and keep it (the last run's)")
    parser.add_argument("--timed", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.timed:
        return timed_cli(args.timed, rest[1:] if rest[:1] == ["--"] else rest)
    compileall.compile_dir(ROOT / "improver", quiet=1)
    compileall.compile_dir(ROOT / "examples", quiet=1)
    runs = []
    for _ in range(max(args.repeat, 1)):
        with tempfile.TemporaryDirectory(prefix="improver-speed-") as scratch:
            runs.append(measure(args.sessions, args.keep or Path(scratch) / "demo", Path(scratch)))
        report(runs[-1], args.sessions)
    if len(runs) > 1:
        ratios = [run["wall"] / sum(run["floors"].values()) for run in runs]
        walls = [run["wall"] for run in runs]
        print(f"\n{len(runs)} runs: CLI wall {', '.join(f'{w:.2f}' for w in walls)} s; ratio to the floors "
              f"{', '.join(f'{r:.2f}' for r in ratios)}; median ratio {statistics.median(ratios):.2f}, "
              f"median wall {statistics.median(walls):.2f} s")


if __name__ == "__main__":
    main()
