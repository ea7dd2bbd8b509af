"""A content-moderation domain written only for bench/active.py: other fields, other labels.

Posts carry a category, the account's age and followers, a language, the number of
user reports and a short text. The agent's written policy: remove at 5+ reports,
restrict at 2+, keep the rest; a learned rule from the experiment's config wins first.
The trust-and-safety reviewer knows six things the policy does not, some common and
some rare (which is where picking what to review matters), and flips 5% of her
precedent calls.
"""
from __future__ import annotations

import random
from pathlib import Path

from improver.runtime import load_overlay

CATEGORIES = ["news", "satire", "ads", "personal", "politics", "sports", "gaming"]
LANGUAGES = ["en", "es", "de", "pt", "fr"]
WORDS = {"news": "breaking report on the city council vote", "satire": "totally real news about cats running the bank",
         "ads": "limited offer on running shoes", "personal": "photos from our trip to the lake",
         "politics": "my view on the new tax bill", "sports": "what a goal in the final minute",
         "gaming": "new speedrun record on level four"}
EXTRAS = ["", "", "", "", " crypto airdrop", " giveaway click the link", " free followers"]
FLIP = {"keep": "remove", "remove": "keep", "restrict": "keep"}


def posts(n: int, seed: int, start: int = 0) -> list[dict]:
    rng = random.Random(f"moderation/{seed}")
    out = []
    for i in range(start, start + n):
        category = rng.choices(CATEGORIES, weights=[16, 12, 16, 20, 14, 12, 10])[0]
        extra = rng.choice(EXTRAS)
        out.append({"post_id": f"M-{seed}-{i:05d}", "category": category, "language": rng.choice(LANGUAGES),
                    "account_age_days": int(rng.expovariate(1 / 400)), "followers": int(10 ** rng.uniform(1, 5)),
                    "reports": min(int(rng.expovariate(1 / 4)), 20), "text": WORDS[category] + extra})
    return out


def decide(case: dict, config_dir: Path) -> dict:
    rule = load_overlay(config_dir).match(case)
    if rule:
        return {"decision": rule.decision, "confidence": rule.confidence, "cited": [f"rule:{rule.id}"]}
    reports = case["reports"]
    decision = "remove" if reports >= 5 else "restrict" if reports >= 2 else "keep"
    return {"decision": decision, "confidence": "high", "reasoning": f"{reports} reports", "cited": ["policy:reports"]}


def call(case: dict, agent_decision: str) -> tuple[str, str | None, str]:
    """The reviewer's noiseless decision, precedent tag and reasoning."""
    text = case["text"]
    if case["category"] == "satire" and case["reports"] >= 2:
        return "keep", "satire-is-protected", "Satire is protected even when heavily reported."
    if case["account_age_days"] < 60 and "crypto" in text:
        return "remove", "new-account-crypto", "New account pushing crypto: spam ring, remove."
    if case["language"] == "pt" and case["category"] == "ads":
        return "restrict", "pt-ads-licence", "Ads in Portuguese need the Brazil licence; restrict until verified."
    if case["followers"] > 20000 and 2 <= case["reports"] < 5:
        return "keep", None, "Large creator accounts attract brigading; a few reports are not enough here."
    if "giveaway" in text and case["account_age_days"] < 90:
        return "remove", "giveaway-scam", "Giveaway links from young accounts are phishing."
    if case["category"] == "politics" and case["reports"] >= 5:
        return "restrict", "election-period", "During the election period political posts are restricted, not removed."
    return agent_decision, None, "Agree with the policy call."


def review_ids(decisions: dict[str, dict], ids, seed: int = 0, inconsistency: float = 0.05) -> list[dict]:
    events = []
    for session in ids:
        event = decisions[session]
        decision, precedent, why = call(event["case"], event["decision"])
        if precedent and random.Random(f"moderation-review/{seed}/{session}").random() < inconsistency:
            decision, why = FLIP.get(decision, decision), "Borderline; going the other way on this one."
        events.append({"type": "review", "session_id": session, "reviewer": "tsa", "decision": decision,
                       "reasoning": why, "precedent": precedent, "conditions": [], "ts": event.get("ts")})
    return events
