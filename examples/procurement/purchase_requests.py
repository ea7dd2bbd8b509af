"""Seeded purchase-request generator for the procurement example.

``generate_requests(n, seed)`` returns what requesters submit: department, vendor,
category, item, amount, urgency, a free-text justification, renewal facts and a date.
Requests are drawn from *kinds* (a panic-buy marketing tool, an urgent Customer Success
request, a DataStream quote, a routine approval, ...) in fixed proportions, allocated
by largest remainder and then shuffled, so every seed and every n carries the same mix
and the baseline agent agrees with the reviewer on about 54% of them, as in the seed
demo. The weights are the counts for the demo's 130 requests. Pure python and one
``random.Random(seed)``: a million requests take a few seconds.
"""
from __future__ import annotations

import datetime as dt
import random
from typing import NamedTuple

DEPARTMENTS = ("Engineering", "Marketing", "Sales", "Customer Success", "Security")
MARKETING_SALES = ("Marketing", "Sales")
ENG_MKT_SALES = ("Engineering", "Marketing", "Sales")

# Which categories a request to a vendor is for (Vertex requests are hardware only).
VENDOR_CATEGORIES = {
    "CloudBase Inc": ("cloud",),
    "Vertex Systems": ("hardware",),
    "DataStream Analytics": ("data",),
    "Insight Partners": ("consulting",),
    "Nimbus Software": ("software",),
    "Apex Security": ("security",),
    "BrightReach Media": ("marketing-tools",),
    "Helix Consulting": ("consulting", "support-tools"),
    "Quantum Tools": ("software", "security"),
}
# The everyday vendors of each department, for kinds that do not name a vendor.
DEPARTMENT_VENDORS = {
    "Engineering": ("Nimbus Software", "Apex Security"),
    "Marketing": ("BrightReach Media", "Nimbus Software"),
    "Sales": ("Nimbus Software", "BrightReach Media"),
    "Customer Success": ("Nimbus Software",),
    "Security": ("Apex Security",),
}
ITEMS = {
    "cloud": ("compute capacity expansion", "managed database cluster", "object storage tier", "CDN bandwidth add-on"),
    "hardware": ("developer laptops", "network switches", "rack servers", "conference room displays", "docking stations"),
    "data": ("analytics dashboard rollout", "data pipeline connectors", "warehouse query credits", "customer data platform seats"),
    "consulting": ("process assessment engagement", "implementation advisory hours", "vendor selection workshop"),
    "support-tools": ("help desk seats", "live chat add-on", "knowledge base licenses", "call recording add-on"),
    "software": ("design suite licenses", "CI runner minutes", "project tracker seats", "code review tool licenses"),
    "security": ("endpoint protection licenses", "penetration test", "SIEM log retention add-on", "hardware security keys"),
    "marketing-tools": ("social scheduling plugin", "landing page builder license", "ad analytics add-on", "webinar platform license"),
}
PANIC_ITEMS = ("social scheduling plugin", "influencer outreach tool license", "landing page builder license",
               "event microsite plugin", "video editing add-on", "SMS blast tool license")
TEAMS = {
    "Engineering": ("platform", "data", "mobile"),
    "Marketing": ("growth", "brand"),
    "Sales": ("enterprise sales", "SDR"),
    "Customer Success": ("support", "onboarding"),
    "Security": ("SecOps", "GRC"),
}
CAMPAIGNS = ("spring launch", "summer webinar", "partner co-marketing", "trade show", "holiday promo", "product relaunch")
DELIVERABLES = ("churn dashboard for the board deck", "pipeline attribution report", "Q3 revenue forecast model")

# Justification templates. Only the named pools use the words the reviewer reacts to
# (campaign, understaffed, migration, deliverable, breach, incident).
JUSTIFICATIONS = {
    "routine": (
        "{item} for the {team} team; covers the rest of the quarter.",
        "Standard purchase of {item}, budgeted in the quarterly plan.",
        "Need {item} to keep the {team} workflow running.",
        "Adding {item} for new hires joining the {team} team.",
        "Planned item from the annual roadmap: {item}.",
        "Ongoing need for {item}; the current allotment runs out this month.",
    ),
    "panic": (
        "Need {item} for the {campaign} campaign launching next week.",
        "Urgent: {item} for the {campaign} campaign, the agency asked for it.",
        "One-off {item} so we can run the {campaign} campaign this month.",
        "The {campaign} campaign needs {item} before launch; no time to compare options.",
    ),
    "cs_urgent": (
        "Team is understaffed and the ticket backlog keeps growing; need {item} now.",
        "Customer migration deadline this month; {item} keeps onboarding on track.",
        "We are understaffed through the quarter; {item} to cover escalations.",
        "Top accounts are escalating; need {item} immediately.",
        "Migration of enterprise customers is blocked without {item}.",
    ),
    "datastream": (
        "Analytics for the quarterly business review: {item}.",
        "{item} to consolidate reporting across teams.",
        "Exploring {item} for better forecasting.",
        "{item}; the vendor's proposal covers setup and training.",
    ),
    "datastream_deliverable": (
        "{item}; deliverable: {deliverable} by end of quarter.",
        "Fixed-scope work with one named deliverable: the {deliverable}.",
        "{item} tied to a single deliverable ({deliverable}) with acceptance criteria.",
    ),
    "security_breach": (
        "Follow-up to last week's breach: {item} to close the gap.",
        "Active incident response; need {item} now.",
        "Incident postmortem action item: {item}.",
        "Containment after the breach requires {item}.",
    ),
    "security_campaign": (
        "Phishing awareness campaign for all staff: {item}.",
        "Quarterly security awareness campaign needs {item}.",
    ),
    "renewal": (
        "Annual renewal of {item}.",
        "Renewal of {item} for the {team} team; the vendor changed its price list.",
        "{item} renewal for the next 12 months.",
    ),
}

# Amount ranges (dollars, drawn log-uniform) that exceed each department's remaining budget.
OVER_BUDGET = {"Marketing": (47000, 75000), "Sales": (37000, 60000), "Customer Success": (27000, 45000),
               "Security": (32000, 48000)}
# Over budget but still inside the manager band (for Vertex's goodwill band).
OVER_BUDGET_MANAGER_BAND = {"Sales": (36000, 49000), "Customer Success": (26000, 49000), "Security": (31000, 49000)}
WITHIN_BUDGET = {"Engineering": (300, 45000), "Marketing": (300, 40000), "Sales": (300, 30000),
                 "Customer Success": (300, 20000), "Security": (300, 25000)}
SANDBAG_BANDS = [(3850, 4990), (38500, 49900)]  # amounts whose x1.3 crosses the $5K or $50K tier


class Kind(NamedTuple):
    """One kind of request: its weight (count per 130) and how its fields are drawn."""

    name: str
    weight: int
    departments: tuple[str, ...]
    vendors: tuple[str, ...] | None  # None: the department's everyday vendors
    amount: tuple | dict | list  # (lo, hi), {department: (lo, hi)} or [(lo, hi), ...]
    urgencies: tuple[str, ...]
    pool: str
    renewal_pct: tuple[float, float] | None = None


LOW_NORMAL = ("low", "normal", "normal")
URGENT = ("urgent", "emergency")

KINDS = (
    # --- the six precedents of the seed demo (62 of 130)
    Kind("panic_buy", 11, MARKETING_SALES, ("BrightReach Media", "Nimbus Software"), (600, 30000), ("urgent", "urgent", "normal"), "panic"),
    Kind("panic_buy_over_budget", 3, MARKETING_SALES, ("BrightReach Media", "Nimbus Software"), OVER_BUDGET, ("urgent", "normal"), "panic"),
    Kind("cs_unlisted_vendor", 6, ("Customer Success",), ("Helix Consulting",), (3000, 45000), URGENT, "cs_urgent"),
    Kind("cs_over_budget", 3, ("Customer Success",), ("Nimbus Software", "Apex Security"), (26000, 49000), URGENT, "cs_urgent"),
    Kind("cs_urgent_within_policy", 5, ("Customer Success",), ("Nimbus Software", "Apex Security"), (800, 20000), URGENT, "cs_urgent"),
    Kind("datastream_quote", 10, ENG_MKT_SALES, ("DataStream Analytics",), (1500, 30000), ("low", "normal", "urgent"), "datastream"),
    Kind("datastream_over_budget", 2, MARKETING_SALES, ("DataStream Analytics",), OVER_BUDGET, ("normal",), "datastream"),
    Kind("datastream_deliverable", 2, ENG_MKT_SALES, ("DataStream Analytics",), (2000, 30000), ("normal",), "datastream_deliverable"),
    Kind("vertex_renewal", 5, ENG_MKT_SALES, ("Vertex Systems",), (5000, 30000), ("low", "normal"), "renewal", (11.0, 19.0)),
    Kind("vertex_over_budget", 2, ("Sales", "Customer Success", "Security"), ("Vertex Systems",), OVER_BUDGET_MANAGER_BAND, ("low", "normal"), "routine"),
    Kind("vertex_manager_band", 1, ("Engineering", "Marketing"), ("Vertex Systems",), (5000, 30000), ("normal",), "routine"),
    Kind("cloudbase_large", 3, ("Engineering",), ("CloudBase Inc",), (55000, 160000), ("normal", "urgent"), "routine"),
    Kind("cloudbase_over_budget", 2, ("Marketing", "Sales", "Customer Success"), ("CloudBase Inc",), OVER_BUDGET, ("low", "normal"), "routine"),
    Kind("cloudbase_small", 2, DEPARTMENTS, ("CloudBase Inc",), (1000, 20000), ("low", "normal"), "routine"),
    Kind("consolidation", 3, ENG_MKT_SALES, ("Quantum Tools",), (5000, 30000), ("normal",), "routine"),
    Kind("consolidation_small", 2, ENG_MKT_SALES, ("Quantum Tools",), (500, 4900), ("normal",), "routine"),
    # --- the reviewer's other knowledge, without a precedent tag
    Kind("engineering_sandbag", 3, ("Engineering",), None, SANDBAG_BANDS, ("normal", "urgent"), "routine"),
    Kind("renewal_steep_increase", 2, ENG_MKT_SALES, None, (2000, 30000), ("low", "normal"), "renewal", (21.0, 35.0)),
    Kind("renewal_moderate_increase", 2, ENG_MKT_SALES, None, (2000, 30000), ("low", "normal"), "renewal", (10.5, 20.0)),
    Kind("security_breach", 3, ("Security",), ("Apex Security",), (31000, 90000), ("emergency", "urgent"), "security_breach"),
    Kind("security_breach_small", 1, ("Security",), ("Apex Security",), (2000, 20000), ("emergency",), "security_breach"),
    Kind("over_escalation_vp", 2, ("Engineering",), ("Nimbus Software", "Apex Security"), (55000, 150000), ("normal",), "routine"),
    Kind("over_escalation_small", 1, ENG_MKT_SALES, ("Helix Consulting",), (400, 3800), ("normal",), "routine"),
    Kind("insight_partners", 3, ("Engineering", "Marketing", "Sales", "Security"), ("Insight Partners",), (5000, 60000), ("normal",), "routine"),
    # --- agreements and look-alike decoys
    Kind("renewal_small_increase", 3, DEPARTMENTS, None, (1000, 20000), ("low", "normal"), "renewal", (0.0, 10.0)),
    Kind("over_budget", 8, ("Marketing", "Sales", "Customer Success", "Security"), None, OVER_BUDGET, ("low", "normal"), "routine"),
    Kind("approved_vendor_vp", 2, ("Engineering",), ("Vertex Systems",), (55000, 150000), ("normal",), "routine"),
    Kind("unlisted_vendor_large", 1, ENG_MKT_SALES, ("Helix Consulting",), (6000, 35000), ("normal",), "routine"),
    Kind("security_awareness_campaign", 1, ("Security",), ("Apex Security",), (1000, 15000), ("normal",), "security_campaign"),
    Kind("cs_routine", 3, ("Customer Success",), None, (500, 20000), ("low", "normal"), "routine"),
    Kind("vertex_small", 1, ("Engineering",), ("Vertex Systems",), (800, 3800), ("normal",), "routine"),
    Kind("routine", 32, DEPARTMENTS, None, WITHIN_BUDGET, LOW_NORMAL, "routine"),
)
KIND_BY_NAME = {kind.name: kind for kind in KINDS}

QUARTER_START = dt.date(2026, 4, 1)
DATES = tuple((QUARTER_START + dt.timedelta(days=offset)).isoformat() for offset in range(91))


def kind_counts(n: int) -> dict[str, int]:
    """How many requests of each kind n requests hold (largest-remainder allocation)."""
    total = sum(kind.weight for kind in KINDS)
    exact = [n * kind.weight / total for kind in KINDS]
    counts = [int(value) for value in exact]
    by_remainder = sorted(range(len(KINDS)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return {kind.name: count for kind, count in zip(KINDS, counts)}


def _amount(rng: random.Random, spec, department: str) -> float:
    if isinstance(spec, dict):
        spec = spec[department]
    elif isinstance(spec, list):
        spec = spec[rng.randrange(len(spec))]
    low, high = spec
    return float(round(low * (high / low) ** rng.random()))


def in_sandbag_band(amount: float) -> bool:
    """Whether an amount x1.3 crosses the $5K or $50K approval tier."""
    return any(amount < tier <= amount * 1.3 for tier in (5000, 50000))


def _request(rng: random.Random, kind: Kind, request_id: str) -> dict:
    department = kind.departments[rng.randrange(len(kind.departments))]
    vendors = kind.vendors or DEPARTMENT_VENDORS[department]
    vendor = vendors[rng.randrange(len(vendors))]
    categories = VENDOR_CATEGORIES[vendor]
    category = categories[rng.randrange(len(categories))]
    items = PANIC_ITEMS if kind.pool == "panic" else ITEMS[category]
    item = items[rng.randrange(len(items))]
    amount = _amount(rng, kind.amount, department)
    if department == "Engineering" and kind.name != "engineering_sandbag" and in_sandbag_band(amount):
        amount = float(round(amount * 0.7))  # keep Engineering out of the sandbag bands unless that is the point
    templates = JUSTIFICATIONS[kind.pool]
    teams = TEAMS[department]
    justification = templates[rng.randrange(len(templates))].format(
        item=item,
        team=teams[rng.randrange(len(teams))],
        campaign=CAMPAIGNS[rng.randrange(len(CAMPAIGNS))],
        deliverable=DELIVERABLES[rng.randrange(len(DELIVERABLES))],
    )
    justification = justification[0].upper() + justification[1:]
    is_renewal = kind.renewal_pct is not None
    price_increase = round(rng.uniform(*kind.renewal_pct), 1) if is_renewal else 0.0
    return {
        "request_id": request_id,
        "department": department,
        "vendor": vendor,
        "category": category,
        "item": item,
        "amount": amount,
        "urgency": kind.urgencies[rng.randrange(len(kind.urgencies))],
        "justification": justification,
        "is_renewal": is_renewal,
        "price_increase_pct": price_increase,
        "submitted": DATES[rng.randrange(len(DATES))],
    }


def generate_kinds(n: int, rng: random.Random) -> list[str]:
    """The kind of each of n requests, in shuffled order."""
    kinds = [name for name, count in kind_counts(n).items() for _ in range(count)]
    rng.shuffle(kinds)
    return kinds


def generate_requests(n: int = 130, seed: int = 7, with_kind: bool = False) -> list[dict]:
    """n purchase requests, deterministic per seed. ``with_kind`` adds a ``_kind`` field (for tests)."""
    rng = random.Random(seed)
    width = max(3, len(str(n)))
    requests = []
    for index, name in enumerate(generate_kinds(n, rng), start=1):
        request = _request(rng, KIND_BY_NAME[name], f"PR-{index:0{width}d}")
        if with_kind:
            request["_kind"] = name
        requests.append(request)
    return requests
