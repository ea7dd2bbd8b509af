"""Write traces.jsonl: 120 tickets, the agent's calls and a support lead's reviews.

The lead knows two things the policy does not: login tickets go to the auth team
during the SSO migration (precedent ``sso-migration``), and enterprise-plan tickets
are always escalated (free text only, no tag).
"""
import json
import random

rng = random.Random(11)
rows = []
for i in range(120):
    product = rng.choice(["billing", "login", "search", "api"])
    plan = rng.choice(["free", "pro", "enterprise"])
    waited = rng.randint(1, 60)
    text = {"login": "cannot sign in after the password reset", "billing": "charged twice this month",
            "search": "results are slow", "api": "rate limit errors on the export endpoint"}[product]
    case = {"ticket": f"T-{i:03d}", "product": product, "plan": plan, "waited_minutes": waited, "text": text}
    agent = "escalate" if waited > 30 else "resolve"
    human, precedent, why = agent, None, "Agree."
    if product == "login":
        human, precedent, why = "escalate", "sso-migration", "Login issues go to the auth team while SSO migrates."
    elif plan == "enterprise":
        human, why = "escalate", "Enterprise customer: always escalate, their contract has a 1h SLA."
    rows.append({"type": "decision", "session_id": case["ticket"], "case": case, "decision": agent, "confidence": "high",
                 "reasoning": f"waited {waited} min", "cited": ["policy:wait-time"], "ts": "2026-11-01T09:00:00Z"})
    rows.append({"type": "review", "session_id": case["ticket"], "reviewer": "lead", "decision": human,
                 "reasoning": why, "precedent": precedent, "conditions": [], "ts": "2026-11-01T10:00:00Z"})
with open("traces.jsonl", "w") as out:
    out.writelines(json.dumps(r) + "\n" for r in rows)
