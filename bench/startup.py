"""How long `improver --help` takes, against `python -c pass` (best of N runs, wall clock).

    python bench/startup.py [--runs 10]

Prints both figures in seconds (wall clock and the child's CPU time, which a busy machine disturbs
less); the difference is improver's own imports and command set-up.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
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


if __name__ == "__main__":
    main()
