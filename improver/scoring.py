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
from itertools import chain, repeat

import numpy as np

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
    """Scores for one experiment; ``decisions`` and ``parent`` map session id to decision (each
    decision read once a session, then counted as label codes in numpy)."""
    ids = [s.session_id for s in sessions]
    humans = [s.human_decision for s in sessions]
    heldout = (np.fromiter((split_of(i, holdout) == "heldout" for i in ids), dtype=bool, count=len(ids)) if holdout
               else np.zeros(len(ids), dtype=bool))
    now = list(map(decisions.get, ids, repeat(ERROR)))
    before = list(map(parent.get, ids, repeat(ERROR))) if parent else None
    labels = list(dict.fromkeys(chain(humans, now, before or ())))
    index = {label: code for code, label in enumerate(labels)}

    def coded(values: list[str]) -> np.ndarray:
        return np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))

    human, now_codes = coded(humans), coded(now)
    before_codes = coded(before) if before is not None else None

    def by_split(decided: np.ndarray) -> dict[str, Counter]:  # (agent, human) pairs counted per split
        pairs = decided * len(labels) + human
        every = np.bincount(pairs, minlength=len(labels) ** 2)
        held = np.bincount(pairs[heldout], minlength=len(labels) ** 2)
        return {name: Counter({(labels[p // len(labels)], labels[p % len(labels)]): int(n)
                               for p, n in enumerate(counts.tolist()) if n})
                for name, counts in (("heldout", held), ("all", every), ("train", every - held))}

    now_split = by_split(now_codes)
    results: dict = {name: _agreement_of(now_split[name]) for name in (*SPLITS, "all")}
    now_pairs = now_split["all"]
    before_split = by_split(before_codes) if before_codes is not None else None
    before_pairs = before_split["all"] if before_split else Counter()
    shown = sorted({label for pair in list(now_pairs) + list(before_pairs) for label in pair})
    results["confusion"] = [
        {"agent": a, "human": h, "count": now_pairs.get((a, h), 0), "parent_count": before_pairs.get((a, h), 0) if parent else None}
        for a in shown for h in shown if now_pairs.get((a, h)) or before_pairs.get((a, h))
    ]
    errors = [ids[k] for k in np.flatnonzero(now_codes == index[ERROR]).tolist()] if ERROR in index else []
    results["errors"] = {"count": len(errors), "sessions": errors[:50]}
    if parent:
        results["change"] = {}
        for name in (*SPLITS, "all"):
            agreement = _agreement_of(before_split[name])
            results["change"][name] = round(results[name]["agreement"] - agreement["agreement"], 4) \
                if agreement["sessions"] else None
        changed = np.flatnonzero(before_codes != now_codes)
        regressed = changed[before_codes[changed] == human[changed]].tolist()  # agreed under the parent
        results["regressions"] = [{"session_id": ids[k], "split": "heldout" if heldout[k] else "train", "human": humans[k],
                                   "before": before[k], "now": now[k]} for k in regressed]
        results["fixed"] = int((now_codes[changed] == human[changed]).sum())
        results["changed"] = len(changed)
    return results


def confusion_table(results: dict) -> list[tuple[str, str, str, int, int | None]]:
    """Rows of the seed's table: agent, human, status, count, parent count."""
    return [(row["agent"], row["human"], "unchanged" if row["agent"] == row["human"] else "changed", row["count"],
             row["parent_count"]) for row in results.get("confusion", [])]
