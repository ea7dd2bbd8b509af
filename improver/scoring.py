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
    if holdout <= 0:
        return "train"
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
    ids = [s.session_id for s in sessions]
    humans = [s.human_decision for s in sessions]
    heldout = [split_of(i, holdout) == "heldout" for i in ids] if holdout else [False] * len(ids)
    now = [decisions.get(i, ERROR) for i in ids]
    before = [parent.get(i, ERROR) for i in ids] if parent else None

    def by_split(decided: list[str]) -> dict[str, Counter]:  # (agent, human) pairs counted per split
        pairs = {"heldout": Counter(pair for pair, out in zip(zip(decided, humans), heldout) if out)}
        pairs["all"] = Counter(zip(decided, humans))
        pairs["train"] = pairs["all"] - pairs["heldout"]
        return pairs

    now_split = by_split(now)
    results: dict = {name: _agreement_of(now_split[name]) for name in (*SPLITS, "all")}
    now_pairs = now_split["all"]
    before_split = by_split(before) if parent else None
    before_pairs = before_split["all"] if parent else Counter()
    labels = sorted({label for pair in list(now_pairs) + list(before_pairs) for label in pair})
    results["confusion"] = [
        {"agent": a, "human": h, "count": now_pairs.get((a, h), 0), "parent_count": before_pairs.get((a, h), 0) if parent else None}
        for a in labels for h in labels if now_pairs.get((a, h)) or before_pairs.get((a, h))
    ]
    errors = [i for i, agent in zip(ids, now) if agent == ERROR]
    results["errors"] = {"count": len(errors), "sessions": errors[:50]}
    if parent:
        results["change"] = {}
        for name in (*SPLITS, "all"):
            agreement = _agreement_of(before_split[name])
            results["change"][name] = round(results[name]["agreement"] - agreement["agreement"], 4) \
                if agreement["sessions"] else None
        changed = [k for k, (was, now_decision) in enumerate(zip(before, now)) if was != now_decision]
        regressions = [{"session_id": ids[k], "split": "heldout" if heldout[k] else "train", "human": humans[k],
                        "before": before[k], "now": now[k]} for k in changed if before[k] == humans[k]]
        results["regressions"] = regressions
        results["fixed"] = sum(1 for k in changed if now[k] == humans[k])
        results["changed"] = len(changed)
    return results


def confusion_table(results: dict) -> list[tuple[str, str, str, int, int | None]]:
    """Rows of the seed's table: agent, human, status, count, parent count."""
    return [(row["agent"], row["human"], "unchanged" if row["agent"] == row["human"] else "changed", row["count"],
             row["parent_count"]) for row in results.get("confusion", [])]
