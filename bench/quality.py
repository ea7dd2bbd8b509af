"""Agreement per cycle on the procurement example, over seeds and reviewer-noise levels.

    python bench/quality.py [--seeds 1,2,3,4,5,7] [--noise 0,0.05,0.1] [--requests 130] [--max-cycles 4]

Prints one row per run (baseline, then held-out agreement after each cycle) and the
mean held-out agreement after cycles 1 and 2 per noise level. No model tokens.

Beside each run it prints two ceilings on held-out agreement, from the reviewer's own
rules (``procurement.reviewer.oracle_rules``): ``all rules`` applies every one of them;
``learnable`` only those with at least ``min_evidence`` training sessions that the rule
decides as the reviewer did, one of them an override. No learner held to that minimum
can beat ``learnable`` except by finding broader rules than the reviewer's.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from improver.conditions import matches
from improver.cycle import run_cycles
from improver.demo import make_demo_project
from improver.workspace import Workspace


def ceilings(ws: Workspace) -> tuple[float, float]:
    """Held-out agreement of the reviewer's own rules: all of them, and the learnable ones."""
    from procurement.reviewer import load_knowledge, oracle_rules

    rules = oracle_rules(load_knowledge())

    def first(case: dict) -> dict | None:
        return next((r for r in rules if matches(r["when"], case)), None)

    evidence, overrides = Counter(), Counter()
    for s in ws.train_sessions():
        rule = first(s.case)
        if rule and rule["decision"] == s.human_decision:
            evidence[rule["reason"]] += 1
            overrides[rule["reason"]] += s.agent_decision != s.human_decision
    learnable = {name for name, n in evidence.items() if n >= ws.project.config.min_evidence and overrides[name]}
    heldout = [s for s in ws.sessions if ws.split(s.session_id) == "heldout"]

    def agreement(allowed) -> float:
        decided = [(first(s.case), s) for s in heldout]
        return sum((r["decision"] if r and r["reason"] in allowed else s.agent_decision) == s.human_decision
                   for r, s in decided) / max(len(heldout), 1)

    return agreement({r["reason"] for r in rules}), agreement(learnable)


def one_run(folder: Path, requests: int, seed: int, noise: float, max_cycles: int, tag_share: float) -> dict:
    started = time.perf_counter()
    make_demo_project(folder, n=requests, seed=seed, inconsistency=noise, tag_share=tag_share)
    ws = Workspace(folder)
    ws.ingest(str(folder / "traces.jsonl"))
    history = run_cycles(ws, max_cycles=max_cycles)["history"]
    seconds = time.perf_counter() - started
    return {"history": history, "seconds": seconds, "ceilings": ceilings(ws)}


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
    print(f"{'noise':>5} {'seed':>4} {'base train':>10} {'base held':>9}  {'held-out after cycles 1..':<40} "
          f"{'ceilings: all rules / learnable':>31}   time")
    with tempfile.TemporaryDirectory() as scratch:
        for noise in noises:
            after, learnable = {1: [], 2: []}, []
            for seed in seeds:
                run = one_run(Path(scratch) / f"s{seed}-{noise}", args.requests, seed, noise, args.max_cycles, args.tag_share)
                h = run["history"]
                # a cycle that is not kept leaves the previous experiment in place
                kept = [h[0]["cv"]]
                for row in h[1:]:
                    kept.append(row["cv"] if row["kept"] else kept[-1])
                after[1].append(kept[min(1, len(kept) - 1)])
                after[2].append(kept[min(2, len(kept) - 1)])
                cycles = " ".join(f"{r['cv']:.1%}{'' if r['kept'] else '(x)'}" for r in h[1:])
                every, reachable = run["ceilings"]
                learnable.append(reachable)
                print(f"{noise:>5} {seed:>4} {h[0]['train']:>10.1%} {h[0]['cv']:>9.1%}  {cycles:<40} "
                      f"{every:>23.1%} / {reachable:>5.1%}   {run['seconds']:.1f}s")
            print(f"{noise:>5} mean held-out: cycle 1 {statistics.mean(after[1]):.1%}, cycle 2 {statistics.mean(after[2]):.1%}; "
                  f"learnable ceiling {statistics.mean(learnable):.1%}")
    print("(x) = cycle not kept: held-out agreement did not rise, the parent stays")


if __name__ == "__main__":
    main()
