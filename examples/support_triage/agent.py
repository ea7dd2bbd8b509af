"""A tiny support-triage agent: the command form of improver's target contract.

    python agent.py <config_dir>  < cases.jsonl  > decisions.jsonl

It escalates tickets that waited longer than the policy allows and resolves the
rest; a learned rule from the experiment's config (improver.runtime) wins first.
"""
import json
import sys
from pathlib import Path

import yaml

from improver.runtime import load_overlay


def decide(case: dict, config_dir: Path) -> dict:
    overlay = load_overlay(config_dir)
    rule = overlay.match(case)
    if rule:
        return {"decision": rule.decision, "confidence": rule.confidence, "reasoning": rule.reason, "cited": [f"rule:{rule.id}"]}
    policy = yaml.safe_load((Path(config_dir) / "policy.yaml").read_text())
    late = case["waited_minutes"] > policy["escalate_after_minutes"]
    return {"decision": "escalate" if late else "resolve", "confidence": "high",
            "reasoning": f"waited {case['waited_minutes']} min", "cited": ["policy:wait-time"]}


if __name__ == "__main__":
    config = Path(sys.argv[1])
    for line in sys.stdin:
        print(json.dumps(decide(json.loads(line), config)), flush=True)
