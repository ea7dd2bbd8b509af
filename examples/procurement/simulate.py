"""Write the example's traces: the agent decides every request, Vera reviews every decision.

``write_traces`` generates n requests, runs the agent on them in batches
(``decide_batch``), has the simulated reviewer review each decision, and writes native
trace JSONL (a decision event and a review event per session). Run it as
``python -m procurement.simulate --n 130 --seed 7 --out traces.jsonl`` with
``examples/`` on ``PYTHONPATH``.

``review_ids`` is the reviewer answering a review queue: given the agent's decision
events and the session ids picked for review, Vera reviews just those
(``python -m procurement.simulate --review-ids picks.jsonl --traces traffic.jsonl
--out reviews.jsonl``). Each session's noise is drawn from its own seeded stream, so a
session gets the same review whenever and in whatever order it is asked for.
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


def review_ids(decisions: dict[str, dict], ids, seed: int = 7, tag_share: float = 0.8,
               inconsistency: float = 0.05) -> list[dict]:
    """Vera's review events for the decision events (by session id) whose ids are picked."""
    knowledge = load_knowledge()
    events = []
    for session in ids:
        event = decisions[session]
        rng = random.Random(f"vera.fye/{seed}/{session}")
        verdict = review(event["case"], event, knowledge, rng, tag_share, inconsistency)
        events.append({"type": "review", "session_id": session, "reviewer": REVIEWER, **verdict,
                       "ts": (event.get("ts") or "")[:16] + ":30Z" if event.get("ts") else None})
    return events


def _review_picks(args) -> int:
    decisions = {}
    with open(args.traces, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row.get("type") == "decision":
                decisions[row["session_id"]] = row
    with open(args.review_ids, encoding="utf-8") as handle:
        ids = [json.loads(line)["session_id"] for line in handle if line.strip()]
    events = review_ids(decisions, ids, args.seed, args.tag_share, args.inconsistency)
    Path(args.out).write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    print(json.dumps({"reviewed": len(events), "out": args.out}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m procurement.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=130, help="number of purchase requests (sessions)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="traces.jsonl", help="trace JSONL file to write")
    parser.add_argument("--tag-share", type=float, default=0.8, help="share of precedent reviews that carry their tag")
    parser.add_argument("--inconsistency", type=float, default=0.05, help="chance the reviewer flips a precedent call")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG_DIR), help="agent config folder")
    parser.add_argument("--review-ids", help="JSONL of picked session ids (improver queue --out): review just those")
    parser.add_argument("--traces", help="with --review-ids: the trace JSONL holding the agent's decisions")
    args = parser.parse_args(argv)
    if args.review_ids:
        return _review_picks(args)
    summary = write_traces(args.out, args.n, args.seed, args.tag_share, args.inconsistency, args.config)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
