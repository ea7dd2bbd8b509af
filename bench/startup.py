"""How long `improver --help` takes, against `python -c pass` (best of N runs, wall clock), and
what a small team pays on every cycle: `improver cycle --max-cycles 1` on the 130-session demo
project once it has run (nothing left to rerun: start-up, imports, LangGraph, mining, exit).

    python bench/startup.py [--runs 10]

Prints the figures in seconds (wall clock and the child's CPU time, which a busy machine disturbs
less); the difference from `python -c pass` is improver's own imports, command set-up and exit.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPROVER = str(Path(sys.executable).with_name("improver"))


def best(argv: list[str], runs: int) -> tuple[float, float]:
    """The best wall-clock and CPU seconds of ``runs`` runs."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    bare = best([sys.executable, "-c", "pass"], runs)
    helped = best([IMPROVER, "--help"], runs)
    print(f"python -c pass: {bare[0]:.3f} s wall, {bare[1]:.3f} s CPU; "
          f"improver --help: {helped[0]:.3f} s wall, {helped[1]:.3f} s CPU (best of {runs})")
    with tempfile.TemporaryDirectory(prefix="improver-startup-") as scratch:
        project = Path(scratch) / "demo"
        subprocess.run([IMPROVER, "demo", "--dir", str(project), "--max-cycles", "1"], stdout=subprocess.DEVNULL, check=True)
        cycles = min(runs, 5)
        again = best([IMPROVER, "cycle", "--max-cycles", "1", "--project", str(project)], cycles)
    print(f"improver cycle on the 130-session demo, once it has run: {again[0]:.3f} s wall, {again[1]:.3f} s CPU "
          f"(best of {cycles})")


if __name__ == "__main__":
    main()
