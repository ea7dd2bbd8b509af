"""Vera Fye, the simulated reviewer with institutional knowledge.

Her knowledge (facts, reasoning templates, conditions) is data in
``reviewer/knowledge.yaml``; this module applies it. ``call`` is the oracle: her
noiseless decision on a request, first matching piece of knowledge wins, otherwise she
agrees with the agent. ``review`` is what she writes: the call, sometimes without its
precedent tag (``tag_share``), sometimes flipped on a precedent case
(``inconsistency``, like the seed's CloudBase flip), with free-text reasoning.
``oracle_rules`` writes her knowledge as improver learned rules, the ceiling a
perfect learner could reach. Every test she applies reads request fields only.
"""
from __future__ import annotations

import random
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import yaml

KNOWLEDGE_FILE = Path(__file__).parent / "reviewer" / "knowledge.yaml"
FLIP = {"approve": "reject", "reject": "approve", "flag-for-review": "approve"}


@lru_cache(maxsize=8)
def load_knowledge(path: str | Path = KNOWLEDGE_FILE) -> dict:
    """Vera's knowledge file, parsed (cached per path)."""
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


@lru_cache(maxsize=256)
def _word(word: str) -> re.Pattern[str]:
    # Same semantics as improver's ``contains`` operator: a whole word, case-insensitive.
    return re.compile(r"(?<!\w)" + re.escape(word.lower()) + r"(?!\w)")


def mentions(text: str, words) -> bool:
    """Whether the text mentions any of the words (whole words, case-insensitive)."""
    lowered = text.lower()
    return any(_word(word).search(lowered) for word in words)


class Call(NamedTuple):
    """Vera's noiseless call on one request and what it rests on."""

    decision: str
    precedent: str | None  # a named precedent, or None for other knowledge / agreement
    templates: tuple[str, ...]  # reasoning templates
    conditions: tuple[str, ...] = ()
    facts: tuple[tuple[str, Any], ...] = ()  # extra template fields


def _money(value: float) -> str:
    return f"${value:,.0f}"


def call(case: dict, agent_decision: str, knowledge: dict) -> Call:
    """The oracle: Vera's decision on a request, from her knowledge and the request fields."""
    k = knowledge
    department, vendor = case.get("department"), case.get("vendor")
    amount = float(case.get("amount") or 0)
    text = str(case.get("justification") or "")
    status = k["vendor_status"].get(vendor, "not_listed")
    precedents = k["precedents"]

    if status == "suspended":
        return Call("reject", None, tuple(k["suspended_vendors"]["reasoning"]))

    p = precedents["marketing-panic-buy"]
    if department in p["departments"] and mentions(text, p["mentions"]):
        return Call(p["decision"], "marketing-panic-buy", tuple(p["reasoning"]))

    s = k["security_leeway"]
    if department == s["department"] and (case.get("urgency") in s["urgency"] or mentions(text, s["mentions"])):
        return Call(s["decision"], None, tuple(s["reasoning"]))

    p = precedents["customer-success-understaffed"]
    if (department == p["department"] and amount <= p["max_amount"]
            and (case.get("urgency") in p["urgency"] or mentions(text, p["mentions"]))):
        return Call(p["decision"], "customer-success-understaffed", tuple(p["reasoning"]), tuple(p["conditions"]))

    p = precedents["datastream-cost-overrun"]
    if vendor == p["vendor"]:
        facts = (("inflated", _money(amount * p["overrun_factor"])),)
        if mentions(text, p["unless_mentions"]):
            return Call(p["unless_decision"], "datastream-cost-overrun", tuple(p["unless_reasoning"]), (), facts)
        return Call(p["decision"], "datastream-cost-overrun", tuple(p["reasoning"]), (), facts)

    p = precedents["vertex-march-outage-goodwill"]
    low, high = p["amount_band"]
    if vendor == p["vendor"] and low <= amount <= high:
        return Call(p["decision"], "vertex-march-outage-goodwill", tuple(p["reasoning"]))

    p = precedents["cloudbase-cto-relationship"]
    if vendor == p["vendor"]:
        return Call(p["decision"], "cloudbase-cto-relationship", tuple(p["reasoning"]))

    p = precedents["cfo-vendor-consolidation"]
    preferred = p["preferred_by_category"].get(case.get("category"))
    if preferred and vendor != preferred:
        facts = (("preferred", preferred),)
        if amount < p["small_below"]:
            return Call(p["small_decision"], "cfo-vendor-consolidation", tuple(p["small_reasoning"]),
                        tuple(p["small_conditions"]), facts)
        return Call(p["decision"], "cfo-vendor-consolidation", tuple(p["reasoning"]), (), facts)

    r = k["renewals"]
    increase = float(case.get("price_increase_pct") or 0)
    if case.get("is_renewal") and increase > r["flag_above_pct"]:
        if increase > r["reject_above_pct"]:
            return Call("reject", None, tuple(r["reject_reasoning"]))
        return Call("approve", None, tuple(r["approve_reasoning"]), tuple(r["approve_conditions"]))

    e = k["engineering_sandbag"]
    if department == e["department"]:
        for tier, signoff in zip(k["approval_tiers"], ("manager", "VP")):
            if amount < tier <= amount * e["factor"]:
                facts = (("inflated", _money(amount * e["factor"])), ("tier", _money(tier)), ("signoff", signoff))
                return Call(e["decision"], None, tuple(e["reasoning"]), (), facts)

    o = k["over_escalation"]
    budget = k["budget_remaining"].get(department, 0)
    if status in o["vp_routine_statuses"] and k["approval_tiers"][1] < amount <= budget:
        return Call("approve", None, tuple(o["vp_reasoning"]))
    if status == "not_listed" and amount < o["small_unlisted_below"]:
        return Call("approve", None, tuple(o["small_reasoning"]))

    return Call(agent_decision, None, tuple(k["agree_reasoning"][agent_decision]))


def review(case: dict, agent_result: dict, knowledge: dict, rng: random.Random,
           tag_share: float = 0.8, inconsistency: float = 0.05) -> dict:
    """Vera's review of the agent's decision on one request (every request gets one)."""
    made = call(case, agent_result["decision"], knowledge)
    decision, templates, conditions, precedent = made.decision, made.templates, list(made.conditions), made.precedent
    if precedent is not None:
        flipped = rng.random() < inconsistency
        tagged = rng.random() < tag_share
        if flipped:
            decision = FLIP[decision]
            templates = tuple(knowledge["precedents"][precedent]["flipped"])
            conditions = []
        if not tagged:
            precedent = None
    fields = {
        "vendor": case.get("vendor"), "department": case.get("department"), "item": case.get("item"),
        "category": case.get("category"), "amount": _money(float(case.get("amount") or 0)),
        "pct": f"{float(case.get('price_increase_pct') or 0):g}", **dict(made.facts),
    }
    reasoning = templates[rng.randrange(len(templates))].format(**fields)
    return {"decision": decision, "reasoning": reasoning, "precedent": precedent, "conditions": conditions}


def oracle_rules(knowledge: dict) -> list[dict]:
    """Vera's knowledge as improver learned rules (first match wins), in ``call``'s order.

    Running the agent with these rules reproduces her noiseless reviews exactly: the
    ceiling a perfect learner could reach.
    """
    k, p = knowledge, knowledge["precedents"]
    rules: list[dict] = []

    def rule(name: str, when: dict, decision: str) -> None:
        taken = sum(1 for r in rules if r["reason"] == name)
        rule_id = f"{name}-{taken + 1}" if taken else name
        rules.append({"id": rule_id, "when": when, "decision": decision, "confidence": "high", "reason": name})

    suspended = [v for v, s in k["vendor_status"].items() if s == "suspended"]
    rule("suspended-vendor", {"vendor": {"in": suspended}}, "reject")
    pb = p["marketing-panic-buy"]
    for word in pb["mentions"]:
        rule("marketing-panic-buy", {"department": {"in": pb["departments"]}, "justification": {"contains": word}}, pb["decision"])
    s = k["security_leeway"]
    rule("security-leeway", {"department": {"eq": s["department"]}, "urgency": {"in": s["urgency"]}}, s["decision"])
    for word in s["mentions"]:
        rule("security-leeway", {"department": {"eq": s["department"]}, "justification": {"contains": word}}, s["decision"])
    cs = p["customer-success-understaffed"]
    base = {"department": {"eq": cs["department"]}, "amount": {"le": cs["max_amount"]}}
    rule("customer-success-understaffed", {**base, "urgency": {"in": cs["urgency"]}}, cs["decision"])
    for word in cs["mentions"]:
        rule("customer-success-understaffed", {**base, "justification": {"contains": word}}, cs["decision"])
    ds = p["datastream-cost-overrun"]
    for word in ds["unless_mentions"]:
        rule("datastream-cost-overrun", {"vendor": {"eq": ds["vendor"]}, "justification": {"contains": word}}, ds["unless_decision"])
    rule("datastream-cost-overrun", {"vendor": {"eq": ds["vendor"]}}, ds["decision"])
    vx = p["vertex-march-outage-goodwill"]
    rule("vertex-march-outage-goodwill", {"vendor": {"eq": vx["vendor"]}, "amount": {"ge": vx["amount_band"][0], "le": vx["amount_band"][1]}}, vx["decision"])
    cb = p["cloudbase-cto-relationship"]
    rule("cloudbase-cto-relationship", {"vendor": {"eq": cb["vendor"]}}, cb["decision"])
    co = p["cfo-vendor-consolidation"]
    for category, preferred in co["preferred_by_category"].items():
        when = {"category": {"eq": category}, "vendor": {"ne": preferred}}
        rule("cfo-vendor-consolidation", {**when, "amount": {"lt": co["small_below"]}}, co["small_decision"])
        rule("cfo-vendor-consolidation", when, co["decision"])
    r = k["renewals"]
    rule("renewal-steep", {"is_renewal": {"eq": True}, "price_increase_pct": {"gt": r["reject_above_pct"]}}, "reject")
    rule("renewal-moderate", {"is_renewal": {"eq": True}, "price_increase_pct": {"gt": r["flag_above_pct"]}}, "approve")
    e = k["engineering_sandbag"]
    for tier in k["approval_tiers"]:
        rule("engineering-sandbag", {"department": {"eq": e["department"]}, "amount": {"lt": tier, "ge": tier / e["factor"]}}, e["decision"])
    o = k["over_escalation"]
    routine = [v for v, s in k["vendor_status"].items() if s in o["vp_routine_statuses"]]
    vp_tier = k["approval_tiers"][1]
    for department, budget in k["budget_remaining"].items():
        if budget > vp_tier:
            rule("vp-routine", {"department": {"eq": department}, "vendor": {"in": routine},
                                "amount": {"gt": vp_tier, "le": budget}}, "approve")
    listed = [v for v, s in k["vendor_status"].items() if s != "not_listed"]
    rule("low-risk-unlisted", {"vendor": {"not_in": listed}, "amount": {"lt": o["small_unlisted_below"]}}, "approve")
    return rules
