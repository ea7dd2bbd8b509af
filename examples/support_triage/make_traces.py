"""Write traces.jsonl: 120 tickets, the agent's calls and a support lead's reviews (see lead.py)."""
import json

from lead import call, tickets

rows = []
for case in tickets(120, seed=11):
    waited = case["waited_minutes"]
    agent = "escalate" if waited > 30 else "resolve"
    human, precedent, why = call(case, agent)
    rows.append({"type": "decision", "session_id": case["ticket"], "case": case, "decision": agent, "confidence": "high",
                 "reasoning": f"waited {waited} min", "cited": ["policy:wait-time"], "ts": "2026-11-01T09:00:00Z"})
    rows.append({"type": "review", "session_id": case["ticket"], "reviewer": "lead", "decision": human,
                 "reasoning": why, "precedent": precedent, "conditions": [], "ts": "2026-11-01T10:00:00Z"})
with open("traces.jsonl", "w") as out:
    out.writelines(json.dumps(r) + "\n" for r in rows)
