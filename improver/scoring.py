"""Score an experiment's decisions against the human decisions.

Sessions split stably into train and held-out by a hash of their id, so a session
never changes side as more traces arrive and held-out sessions are never mined.
Scores: agreement per split, the seed's confusion table (agent × human, with the
parent's counts beside), change against the parent, regressions (agreed under the
parent, disagree now) and errors. Beside each agreement, Cohen's kappa.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from functools import lru_cache

from improver.models import ReviewedSession
from improver.runners import ERROR

SPLITS = ("train", "heldout")


@lru_cache(maxsize=2**20)
def split_of(session_id: str, holdout: float) -> str:
    """'heldout' for a stable ``holdout`` share of session ids, else 'train' (remembered: asked per session by every stage)."""
    digest = int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:8], "big")
    return "heldout" if digest / 2**64 < holdout else "train"


def cohens_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Agreement corrected for chance: (observed - expected) / (1 - expected), as annotation tools report it."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(1 for agent, human in pairs if agent == human) / n
    agents, humans = Counter(a for a, _ in pairs), Counter(h for _, h in pairs)
    expected = sum(agents[label] * humans[label] for label in agents) / n ** 2
    return 1.0 if expected == 1 else round((observed - expected) / (1 - expected), 4)


def _agreement_of(pairs: Counter) -> dict:
    """Sessions, agreements, agreement and kappa from the (agent, human) pairs counted."""
    n = sum(pairs.values())
    agree = sum(count for (agent, human), count in pairs.items() if agent == human)
    return {"sessions": n, "agree": agree, "agreement": round(agree / n, 4) if n else None, "kappa": _kappa_of(pairs, n, agree)}


def _kappa_of(pairs: Counter, n: int, agree: int) -> float | None:
    """``cohens_kappa`` from counted pairs: the same figure (its expected agreement is a sum of integer products)."""
    if not n:
        return None
    agents: Counter = Counter()
    humans: Counter = Counter()
    for (agent, human), count in pairs.items():
        agents[agent] += count
        humans[human] += count
    observed = agree / n
    expected = sum(agents[label] * humans[label] for label in agents) / n ** 2
    return 1.0 if expected == 1 else round((observed - expected) / (1 - expected), 4)


def score(sessions: list[ReviewedSession], decisions: dict[str, str], holdout: float,
          parent: dict[str, str] | None = None) -> dict:
    """Scores for one experiment; ``decisions`` and ``parent`` map session id to decision."""
    split = {s.session_id: split_of(s.session_id, holdout) for s in sessions}
    now = [decisions.get(s.session_id, ERROR) for s in sessions]
    before = [parent.get(s.session_id, ERROR) for s in sessions] if parent else None
    by_split = {name: Counter() for name in SPLITS}
    for s, agent in zip(sessions, now):
        by_split[split[s.session_id]][(agent, s.human_decision)] += 1
    results: dict = {name: _agreement_of(by_split[name]) for name in SPLITS}
    now_pairs = by_split["train"] + by_split["heldout"]
    results["all"] = _agreement_of(now_pairs)
    before_pairs = Counter(zip(before, (s.human_decision for s in sessions))) if parent else Counter()
    labels = sorted({label for pair in list(now_pairs) + list(before_pairs) for label in pair})
    results["confusion"] = [
        {"agent": a, "human": h, "count": now_pairs.get((a, h), 0), "parent_count": before_pairs.get((a, h), 0) if parent else None}
        for a in labels for h in labels if now_pairs.get((a, h)) or before_pairs.get((a, h))
    ]
    errors = [s.session_id for s, agent in zip(sessions, now) if agent == ERROR]
    results["errors"] = {"count": len(errors), "sessions": errors[:50]}
    if parent:
        results["change"] = {}
        before_split = {name: Counter() for name in SPLITS}
        for s, was in zip(sessions, before):
            before_split[split[s.session_id]][(was, s.human_decision)] += 1
        before_split["all"] = before_pairs
        for name in (*SPLITS, "all"):
            agreement = _agreement_of(before_split[name])
            results["change"][name] = round(results[name]["agreement"] - agreement["agreement"], 4) \
                if agreement["sessions"] else None
        regressions, fixed = [], 0
        for s, was, now_decision in zip(sessions, before, now):
            if was == now_decision:
                continue
            if was == s.human_decision:
                regressions.append({"session_id": s.session_id, "split": split[s.session_id], "human": s.human_decision,
                                    "before": was, "now": now_decision})
            elif now_decision == s.human_decision:
                fixed += 1
        results["regressions"] = regressions
        results["fixed"] = fixed
        results["changed"] = sum(1 for was, now_decision in zip(before, now) if was != now_decision)
    return results


def confusion_table(results: dict) -> list[tuple[str, str, str, int, int | None]]:
    """Rows of the seed's table: agent, human, status, count, parent count."""
    return [(row["agent"], row["human"], "unchanged" if row["agent"] == row["human"] else "changed", row["count"],
             row["parent_count"]) for row in results.get("confusion", [])]
