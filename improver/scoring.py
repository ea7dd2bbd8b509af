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
from typing import Iterable

from improver.models import ReviewedSession
from improver.runners import ERROR

SPLITS = ("train", "heldout")


def split_of(session_id: str, holdout: float) -> str:
    """'heldout' for a stable ``holdout`` share of session ids, else 'train'."""
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


def _agreement(pairs: Iterable[tuple[str, str]]) -> dict:
    pairs = list(pairs)
    agree = sum(1 for agent, human in pairs if agent == human)
    return {"sessions": len(pairs), "agree": agree, "agreement": round(agree / len(pairs), 4) if pairs else None,
            "kappa": cohens_kappa(pairs)}


def score(sessions: list[ReviewedSession], decisions: dict[str, str], holdout: float,
          parent: dict[str, str] | None = None) -> dict:
    """Scores for one experiment; ``decisions`` and ``parent`` map session id to decision."""
    split = {s.session_id: split_of(s.session_id, holdout) for s in sessions}
    results: dict = {}
    for name in SPLITS:
        results[name] = _agreement((decisions.get(s.session_id, ERROR), s.human_decision)
                                   for s in sessions if split[s.session_id] == name)
    results["all"] = _agreement((decisions.get(s.session_id, ERROR), s.human_decision) for s in sessions)
    now_pairs = Counter((decisions.get(s.session_id, ERROR), s.human_decision) for s in sessions)
    before_pairs = Counter((parent.get(s.session_id, ERROR), s.human_decision) for s in sessions) if parent else Counter()
    labels = sorted({label for pair in list(now_pairs) + list(before_pairs) for label in pair})
    results["confusion"] = [
        {"agent": a, "human": h, "count": now_pairs.get((a, h), 0), "parent_count": before_pairs.get((a, h), 0) if parent else None}
        for a in labels for h in labels if now_pairs.get((a, h)) or before_pairs.get((a, h))
    ]
    errors = [s.session_id for s in sessions if decisions.get(s.session_id, ERROR) == ERROR]
    results["errors"] = {"count": len(errors), "sessions": errors[:50]}
    if parent:
        results["change"] = {}
        for name in (*SPLITS, "all"):
            before = _agreement((parent.get(s.session_id, ERROR), s.human_decision)
                                for s in sessions if name == "all" or split[s.session_id] == name)
            now = results[name]["agreement"]
            results["change"][name] = round(now - before["agreement"], 4) if before["sessions"] else None
        regressions, fixed = [], 0
        for s in sessions:
            was, now = parent.get(s.session_id, ERROR), decisions.get(s.session_id, ERROR)
            if was == s.human_decision and now != s.human_decision:
                regressions.append({"session_id": s.session_id, "split": split[s.session_id], "human": s.human_decision,
                                    "before": was, "now": now})
            elif was != s.human_decision and now == s.human_decision:
                fixed += 1
        results["regressions"] = regressions
        results["fixed"] = fixed
        results["changed"] = sum(1 for s in sessions if parent.get(s.session_id, ERROR) != decisions.get(s.session_id, ERROR))
    return results


def confusion_table(results: dict) -> list[tuple[str, str, str, int, int | None]]:
    """Rows of the seed's table: agent, human, status, count, parent count."""
    return [(row["agent"], row["human"], "unchanged" if row["agent"] == row["human"] else "changed", row["count"],
             row["parent_count"]) for row in results.get("confusion", [])]
