"""What procurement's learned config still gets wrong after a strategy's reviews, by the reviewer's own reason.

    python bench/queue_misses.py [--strategy queue|uniform|random] [--until 200] [--seeds 1,2,3] [--show]

The same steps as ``bench/active.py`` (a pool of 3,000 decisions, 50 random reviews, batches of 25
picked by the strategy, a cycle after each), on procurement only. After the last batch the best
experiment's config decides the 1,000 fresh cases; each disagreement with Vera is counted under the
branch of her knowledge that decided the case (a named precedent, a renewal threshold, another
unnamed habit, or ``agree``: she agreed with the agent and a learned rule changed the decision).
Printed per seed and as a mean a seed, beside the mean number of reviewed sessions of each branch,
so a strategy's curve can be read as which precedents it has not learned yet, and whether it
reviewed too few of them (the picking) or enough but did not learn them (the mining).
``--show`` also prints the last cycle's proposals and the precedents cross-validation dropped.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from active import decision_events, domains, steps  # noqa: E402

from procurement.reviewer import call, load_knowledge  # noqa: E402

KNOWLEDGE = load_knowledge()


def branch(case: dict, agent_decision: str) -> str:
    """The part of Vera's knowledge that decides ``case``."""
    made = call(case, agent_decision, KNOWLEDGE)
    increase = float(case.get("price_increase_pct") or 0)
    if made.precedent:
        return made.precedent
    if case.get("is_renewal") and increase > KNOWLEDGE["renewals"]["flag_above_pct"]:
        return "renewal-steep" if increase > KNOWLEDGE["renewals"]["reject_above_pct"] else "renewal-moderate"
    return "agree" if made.decision == agent_decision else "other: " + made.templates[0][:32]


def one_seed(seed: int, strategy: str, until: int, random_share: float, scratch: Path, show: bool) -> tuple[Counter, Counter]:
    domain = domains()["procurement"]
    args = argparse.Namespace(pool=3000, start=50, step=25, until=until, random_share=random_share, max_cycles=1)
    *_, (_reviewed, ws, best, _traffic) = steps(domain, seed, strategy, args, scratch)
    fresh = domain.cases(1000, seed + 10_000)
    agent = decision_events(domain, fresh, domain.config)
    human = {e["session_id"]: e["decision"] for e in domain.review_ids(agent, list(agent), seed + 10_000)}
    misses = Counter(branch(case, agent[case["request_id"]]["decision"])
                     for case, answer in zip(fresh, domain.decide_batch(fresh, best.config_dir))
                     if answer["decision"] != human[case["request_id"]])
    reviewed = Counter(branch(s.case, s.agent_decision) for s in ws.sessions)
    print(f"seed {seed}: {100 - sum(misses.values()) / 10:.1f}% on fresh cases; misses {dict(misses.most_common())}", flush=True)
    if show:
        for p in best.manifest.proposals:
            print(f"  proposed {p.id}: {json.dumps(p.when)} -> {p.decision}")
        for name, why in (best.manifest.mining.get("cv", {}).get("dropped") or {}).items():
            print(f"  dropped {name}: found by {why.get('found')} of {why.get('folds')} folds, out-of-fold effect {why.get('oof_effect')}")
    return misses, reviewed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="queue", choices=["queue", "uniform", "random"])
    parser.add_argument("--until", type=int, default=200)
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--random-share", type=float, default=0.2)
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    misses, reviewed = Counter(), Counter()
    with tempfile.TemporaryDirectory(prefix="improver-misses-") as scratch:
        for seed in seeds:
            found, seen = one_seed(seed, args.strategy, args.until, args.random_share, Path(scratch), args.show)
            misses.update(found)
            reviewed.update(seen)
    print(f"\n{args.strategy} at {args.until} reviews, {len(seeds)} seeds: {100 - sum(misses.values()) / len(seeds) / 10:.2f}% "
          "on fresh cases")
    print(f"{'branch of the reviewer':42} {'misses a seed':>13} {'reviewed a seed':>15}")
    for name in sorted(set(misses) | set(reviewed), key=lambda k: (-misses[k], k)):
        print(f"{name:42} {misses[name] / len(seeds):13.1f} {reviewed[name] / len(seeds):15.1f}")


if __name__ == "__main__":
    main()
