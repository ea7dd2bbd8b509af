"""Which of the reviewer's rules improver misses on fresh procurement cases.

    python bench/misses.py [--size 130] [--seeds 1,2,3,4,5] [--fresh 2000] [--rules]

Runs improver's cycles as ``bench/quality.py`` does, then sorts every fresh case by the
reviewer's first rule that holds for it (``agree`` when none does: she agrees with the
agent) and counts the cases where the shipped config's decision differs from her
noiseless call, with the learned rule that decided each (``-`` when none did). With
``--rules`` it also prints each seed's shipped rules. The share of all fresh cases says
how many points of agreement each piece of her knowledge costs.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402
from improver.conditions import matches  # noqa: E402
from improver.runtime import load_overlay  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=130)
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--fresh", type=int, default=2000)
    parser.add_argument("--max-cycles", type=int, default=4)
    parser.add_argument("--rules", action="store_true", help="print each seed's shipped rules")
    args = parser.parse_args()
    from procurement.reviewer import load_knowledge, oracle_rules

    reviewer_rules = oracle_rules(load_knowledge())
    cases_by = Counter()
    wrong_by = Counter()
    deciders: dict[str, Counter] = defaultdict(Counter)
    seeds = [int(s) for s in args.seeds.split(",")]
    example = quality.Procurement()
    for seed in seeds:
        with tempfile.TemporaryDirectory() as scratch:
            project = example.project(Path(scratch) / "p", args.size, seed, args.noise)
            ws = quality.Workspace(project)
            ws.ingest(str(project / "traces.jsonl"))
            shipped = ws.experiments.get(quality.run_cycles(ws, max_cycles=args.max_cycles)["parent"])
            overlay = load_overlay(shipped.config_dir)
            if args.rules:
                print(f"seed {seed}:")
                for rule in overlay.rules:
                    print(f"  {rule.id}: {rule.decision} when {json.dumps(rule.when)}")
            cases, base, _humans = example.fresh(args.fresh, seed, args.noise)
            decided = example.decide(cases, shipped.config_dir)
        for case, agent, decision in zip(cases, base, decided):
            rule = next((r for r in reviewer_rules if matches(r["when"], case)), None)
            reason, call = (rule["reason"], rule["decision"]) if rule else ("agree", agent)
            cases_by[reason] += 1
            if decision != call:
                wrong_by[reason] += 1
                hit = overlay.match(case)
                deciders[reason][hit.id if hit else "-"] += 1
    total = sum(cases_by.values())
    print(f"N={args.size}, seeds {args.seeds}: fresh cases where improver differs from the reviewer's noiseless call")
    print(f"{'reviewer rule':<32} {'cases':>6} {'wrong':>6} {'of these':>8} {'of all':>7}  decided by")
    for reason, n in cases_by.most_common():
        top = ", ".join(f"{k} {v}" for k, v in deciders[reason].most_common(3))
        print(f"{reason:<32} {n:>6} {wrong_by[reason]:>6} {wrong_by[reason] / n:>8.1%} {wrong_by[reason] / total:>7.1%}  {top}")
    print(f"{'all':<32} {total:>6} {sum(wrong_by.values()):>6} {sum(wrong_by.values()) / total:>8.1%}")


if __name__ == "__main__":
    main()
