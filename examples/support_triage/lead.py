"""The support lead who reviews the triage agent: tickets, and the lead's calls on them.

``tickets(n, seed)`` draws tickets as ``make_traces.py`` does; ``call`` is the lead's
decision on one ticket given the agent's: login tickets go to the auth team while SSO
migrates (tag ``sso-migration``), enterprise-plan tickets are always escalated (free
text, no tag), otherwise the lead agrees. ``review_ids`` answers a review queue: the
lead's review events for just the picked sessions.
"""
from __future__ import annotations

import random

PRODUCTS = ["billing", "login", "search", "api"]
PLANS = ["free", "pro", "enterprise"]
TEXTS = {"login": "cannot sign in after the password reset", "billing": "charged twice this month",
         "search": "results are slow", "api": "rate limit errors on the export endpoint"}


def tickets(n: int, seed: int = 11, start: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        product = rng.choice(PRODUCTS)
        plan = rng.choice(PLANS)
        waited = rng.randint(1, 60)
        out.append({"ticket": f"T-{i:03d}", "product": product, "plan": plan, "waited_minutes": waited,
                    "text": TEXTS[product]})
    return out


def call(case: dict, agent_decision: str) -> tuple[str, str | None, str]:
    """The lead's decision, precedent tag and reasoning."""
    if case["product"] == "login":
        return "escalate", "sso-migration", "Login issues go to the auth team while SSO migrates."
    if case["plan"] == "enterprise":
        return "escalate", None, "Enterprise customer: always escalate, their contract has a 1h SLA."
    return agent_decision, None, "Agree."


def review_ids(decisions: dict[str, dict], ids) -> list[dict]:
    """The lead's review events for the decision events (by session id) whose ids are picked."""
    events = []
    for session in ids:
        event = decisions[session]
        decision, precedent, why = call(event["case"], event["decision"])
        events.append({"type": "review", "session_id": session, "reviewer": "lead", "decision": decision,
                       "reasoning": why, "precedent": precedent, "conditions": [], "ts": "2026-11-01T10:00:00Z"})
    return events
