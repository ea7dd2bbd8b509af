"""Agreement per cycle on the procurement example, over seeds and reviewer-noise levels.

    python bench/quality.py [--seeds 1,2,3,4,5,7] [--noise 0,0.05,0.1] [--requests 130] [--max-cycles 4]

Prints one row per run (baseline, then held-out agreement after each cycle) and the
mean held-out agreement after cycles 1 and 2 per noise level. No model tokens.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from improver.cycle import run_cycles
from improver.demo import make_demo_project
from improver.workspace import Workspace


def one_run(folder: Path, requests: int, seed: int, noise: float, max_cycles: int, tag_share: float) -> dict:
    started = time.perf_counter()
    make_demo_project(folder, n=requests, seed=seed, inconsistency=noise, tag_share=tag_share)
    ws = Workspace(folder)
    ws.ingest(str(folder / "traces.jsonl"))
    history = run_cycles(ws, max_cycles=max_cycles)["history"]
    return {"history": history, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3,4,5,7")
    parser.add_argument("--noise", default="0,0.05,0.1")
    parser.add_argument("--requests", type=int, default=130)
    parser.add_argument("--max-cycles", type=int, default=4)
    parser.add_argument("--tag-share", type=float, default=0.8)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    noises = [float(x) for x in args.noise.split(",")]
    print(f"requests={args.requests} tag_share={args.tag_share} max_cycles={args.max_cycles}")
    print(f"{'noise':>5} {'seed':>4} {'base train':>10} {'base held':>9}  held-out after cycles 1..   time")
    with tempfile.TemporaryDirectory() as scratch:
        for noise in noises:
            after = {1: [], 2: []}
            for seed in seeds:
                run = one_run(Path(scratch) / f"s{seed}-{noise}", args.requests, seed, noise, args.max_cycles, args.tag_share)
                h = run["history"]
                # a cycle that is not kept leaves the previous experiment in place
                kept = [h[0]["heldout"]]
                for row in h[1:]:
                    kept.append(row["heldout"] if row["kept"] else kept[-1])
                after[1].append(kept[min(1, len(kept) - 1)])
                after[2].append(kept[min(2, len(kept) - 1)])
                cycles = " ".join(f"{r['heldout']:.1%}{'' if r['kept'] else '(x)'}" for r in h[1:])
                print(f"{noise:>5} {seed:>4} {h[0]['train']:>10.1%} {h[0]['heldout']:>9.1%}  {cycles:<40} {run['seconds']:.1f}s")
            print(f"{noise:>5} mean held-out: cycle 1 {statistics.mean(after[1]):.1%}, cycle 2 {statistics.mean(after[2]):.1%}")
    print("(x) = cycle not kept: held-out agreement did not rise, the parent stays")


if __name__ == "__main__":
    main()
