"""Soak: kill `improver cycle` with SIGKILL at random points, resume, and compare with an uninterrupted run.

    python bench/soak.py kills [--sessions 5000] [--trials 10] [--kills 3] [--max-cycles 3] [--seed 1] [--window 1.0]
    python bench/soak.py demos [--sessions 5000] [--runs 20] [--timeout 600]
    python bench/soak.py store [--sessions 5000] [--runs 10]

``kills``: one demo project is made and ingested; an uninterrupted ``improver cycle`` on a
copy of it is the reference. Each trial takes a fresh copy, starts ``improver cycle``,
kills it (``kill -9`` of the improver process only) at a random point within the
reference's wall time, ``--kills`` times (each restart is ``improver cycle --resume``),
then lets ``--resume`` finish. Every experiment folder is then compared byte for byte
with the reference (``decisions.jsonl``, and ``results.json`` without its ``scored``
timestamp); a missing, extra or different file is a mismatch. Orphans are target workers
still alive 3 s after their parent was killed. Prints runs, kills, mismatches, orphans
and the checkpoint store size.

``demos``: ``improver demo -n SESSIONS --max-cycles 1`` ``--runs`` times in a row, each with
a timeout; a run that times out is a hang. ``store``: ``--runs`` consecutive ``improver
cycle`` runs on one project, then the checkpoint store's size.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPROVER = [sys.executable, "-m", "improver.cli"]


def improver(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(IMPROVER + list(args), capture_output=True, text=True, timeout=timeout)


def make_project(folder: Path, sessions: int) -> Path:
    sys.path[:0] = [str(ROOT), str(ROOT / "examples")]
    from improver.demo import make_demo_project

    project = make_demo_project(folder, n=sessions)
    done = improver("ingest", str(project / "traces.jsonl"), "-p", str(project))
    if done.returncode:
        raise SystemExit(done.stderr)
    return project


def copy_project(template: Path, folder: Path) -> Path:
    shutil.copytree(template, folder)
    return folder


def comparable(experiment: Path) -> dict[str, bytes]:
    """The files of an experiment that must be identical across runs, timestamps dropped."""
    files = {}
    decisions = experiment / "decisions.jsonl"
    if decisions.exists():
        files["decisions.jsonl"] = decisions.read_bytes()
    results = experiment / "results.json"
    if results.exists():
        data = json.loads(results.read_text())
        data.pop("scored", None)
        files["results.json"] = json.dumps(data, sort_keys=True).encode()
    for name in ("patch.diff", "report.md"):
        if (experiment / name).exists():
            files[name] = (experiment / name).read_bytes()
    same_config = experiment / "config"
    files["config"] = json.dumps(sorted((str(p.relative_to(same_config)), p.read_text()) for p in same_config.rglob("*")
                                        if p.is_file())).encode()
    return files


def snapshot(project: Path) -> dict[str, dict[str, bytes]]:
    folder = project / "experiments"
    return {p.name: comparable(p) for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def mismatches(reference: dict, got: dict) -> list[str]:
    problems = [f"missing {e}" for e in reference if e not in got] + [f"extra {e}" for e in got if e not in reference]
    for experiment in set(reference) & set(got):
        for name in set(reference[experiment]) | set(got[experiment]):
            if reference[experiment].get(name) != got[experiment].get(name):
                problems.append(f"{experiment}/{name} differs")
    return problems


def worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def store_size(project: Path) -> int:
    path = project / ".improver" / "checkpoints.sqlite"
    return path.stat().st_size if path.exists() else 0


def kills(args) -> None:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="improver-soak-"))
    template = make_project(work / "template", args.sessions)
    cycle = ["cycle", "--max-cycles", str(args.max_cycles)]
    reference_project = copy_project(template, work / "reference")
    started = time.perf_counter()
    done = improver(*cycle, "-p", str(reference_project))
    reference_wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(done.stderr)
    reference = snapshot(reference_project)
    print(f"reference: {args.sessions} sessions, {len(reference)} experiments, {reference_wall:.1f} s", flush=True)
    runs = killed = orphans = 0
    bad: list[str] = []
    sizes = []
    for trial in range(args.trials):
        project = copy_project(template, work / f"trial-{trial}")
        for k in range(args.kills):
            argv = IMPROVER + cycle + ["-p", str(project)] + (["--resume"] if k else [])
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            runs += 1
            at = rng.uniform(0.5, max(1.0, args.window * reference_wall))
            try:
                process.wait(timeout=at)
                continue  # finished before the kill point
            except subprocess.TimeoutExpired:
                pass
            workers = worker_pids(process.pid)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            killed += 1
            time.sleep(3)
            orphans += sum(alive(p) for p in workers)
            print(f"trial {trial}: killed after {at:.1f} s", flush=True)
        finished = improver(*cycle, "--resume", "-p", str(project), timeout=args.timeout)
        runs += 1
        if finished.returncode:
            bad.append(f"trial {trial}: resume exited {finished.returncode}: {finished.stderr[-300:]}")
        problems = mismatches(reference, snapshot(project))
        bad += [f"trial {trial}: {p}" for p in problems]
        sizes.append(store_size(project))
        print(f"trial {trial}: {len(problems)} mismatches, store {sizes[-1] / 1e6:.2f} MB", flush=True)
        shutil.rmtree(project)
    print(f"runs {runs}, kills {killed}, mismatches {len(bad)}, orphans {orphans}, "
          f"checkpoint store max {max(sizes) / 1e6:.2f} MB (reference {store_size(reference_project) / 1e6:.2f} MB)")
    for line in bad[:20]:
        print("  " + line)
    shutil.rmtree(work)


def demos(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="improver-soak-demos-"))
    hangs, walls = 0, []
    for run in range(args.runs):
        started = time.perf_counter()
        try:
            done = improver("demo", "--dir", str(work / "demo"), "-n", str(args.sessions), "--max-cycles", "1",
                            timeout=args.timeout)
            status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-200:]}"
        except subprocess.TimeoutExpired:
            hangs += 1
            status = f"HANG (no exit after {args.timeout:g} s)"
        walls.append(time.perf_counter() - started)
        print(f"demo {run + 1}: {status}, {walls[-1]:.1f} s, store {store_size(work / 'demo') / 1e6:.2f} MB", flush=True)
    print(f"demos {args.runs}, hangs {hangs}, wall median {sorted(walls)[len(walls) // 2]:.1f} s, max {max(walls):.1f} s")
    shutil.rmtree(work)


def store(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="improver-soak-store-"))
    project = make_project(work / "project", args.sessions)
    cycles = 0
    for run in range(args.runs):
        done = improver("cycle", "--max-cycles", "1", "--json", "-p", str(project))
        if done.returncode:
            raise SystemExit(done.stderr)
        cycles += len(json.loads(done.stdout)["history"]) - 1
        print(f"run {run + 1}: store {store_size(project) / 1e6:.3f} MB", flush=True)
    print(f"runs {args.runs}, cycles {cycles}, sessions {args.sessions}, checkpoint store {store_size(project) / 1e6:.3f} MB")
    shutil.rmtree(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("kills", "demos", "store"))
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--max-cycles", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--window", type=float, default=1.0, help="kill points fall within this share of the reference's wall time")
    args = parser.parse_args()
    {"kills": kills, "demos": demos, "store": store}[args.mode](args)


if __name__ == "__main__":
    main()
