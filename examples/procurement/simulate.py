"""Write the example's traces: the agent decides every request, Vera reviews every decision.

``write_traces`` generates n requests, runs the agent on them in batches
(``decide_batch``), has the simulated reviewer review each decision, and writes native
trace JSONL (a decision event and a review event per session). Run it as
``python -m procurement.simulate --n 130 --seed 7 --out traces.jsonl`` with
``examples/`` on ``PYTHONPATH``.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

from .agent import DEFAULT_CONFIG_DIR, decide_batch
from .purchase_requests import generate_requests
from .reviewer import load_knowledge, review

REVIEWER = "vera.fye"
CHUNK = 1000


def write_traces(path: str | Path, n: int = 130, seed: int = 7, tag_share: float = 0.8,
                 inconsistency: float = 0.05, config_dir: str | Path = DEFAULT_CONFIG_DIR) -> dict:
    """Simulate n reviewed sessions into a native trace JSONL file; returns the counts."""
    started = time.perf_counter()
    cases = generate_requests(n, seed)
    knowledge = load_knowledge()
    rng = random.Random(f"vera.fye/{seed}")
    agent_counts, review_counts, precedents = Counter(), Counter(), Counter()
    agreements = 0
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    dumps = json.dumps
    with out.open("w", encoding="utf-8") as handle:
        for start in range(0, n, CHUNK):
            chunk = cases[start:start + CHUNK]
            lines = []
            for index, (case, result) in enumerate(zip(chunk, decide_batch(chunk, config_dir)), start=start):
                verdict = review(case, result, knowledge, rng, tag_share, inconsistency)
                session = case["request_id"]
                clock = f"{case['submitted']}T{9 + index % 8:02d}:{index * 7 % 60:02d}"
                lines.append(dumps({
                    "type": "decision", "session_id": session, "case": case,
                    "decision": result["decision"], "confidence": result["confidence"],
                    "reasoning": result["reasoning"], "cited": result["cited"],
                    "config_version": "base", "ts": clock + ":00Z",
                }))
                lines.append(dumps({
                    "type": "review", "session_id": session, "reviewer": REVIEWER,
                    "decision": verdict["decision"], "reasoning": verdict["reasoning"],
                    "precedent": verdict["precedent"], "conditions": verdict["conditions"],
                    "ts": clock + ":30Z",
                }))
                agent_counts[result["decision"]] += 1
                review_counts[verdict["decision"]] += 1
                if verdict["precedent"]:
                    precedents[verdict["precedent"]] += 1
                agreements += result["decision"] == verdict["decision"]
            handle.write("\n".join(lines) + "\n")
    return {
        "path": str(out),
        "sessions": n,
        "agreements": agreements,
        "baseline_agreement": agreements / n if n else 0.0,
        "agent_decisions": dict(agent_counts),
        "reviewer_decisions": dict(review_counts),
        "tagged_precedents": dict(sorted(precedents.items())),
        "seconds": round(time.perf_counter() - started, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m procurement.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=130, help="number of purchase requests (sessions)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="traces.jsonl", help="trace JSONL file to write")
    parser.add_argument("--tag-share", type=float, default=0.8, help="share of precedent reviews that carry their tag")
    parser.add_argument("--inconsistency", type=float, default=0.05, help="chance the reviewer flips a precedent call")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG_DIR), help="agent config folder")
    args = parser.parse_args(argv)
    summary = write_traces(args.out, args.n, args.seed, args.tag_share, args.inconsistency, args.config)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
