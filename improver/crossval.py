"""Cross-validated mining: stable proposals and an out-of-fold score from every reviewed session.

Small teams have 100–300 reviewed sessions; a fixed held-out split leaves too few to
mine and gates on ±1 session. Instead the sessions outside the locked test split
(``holdout:``) are cut into ``folds`` stable folds by a hash of the session id. Each
fold is mined on the other folds, against that fold's own chain of earlier cycles (so
no rule ever saw the sessions it is scored on), with the evidence minimum scaled to the
share of sessions it sees. A precedent of the mining over all
sessions (the *refit*) is proposed when most folds find it too (same name, or same
condition and decision, or a rule of its group and decision matching most of its sessions)
and its summed out-of-fold effect is not negative: the agreements
its fold rules add on the sessions they were not mined from, replayed in the fold's
decision list. Each proposal carries that per-fold evidence. The shipped config is the
refit with the precedents that passed and that still add agreement as they ship, together
ahead of the parent (``deployable``: a kept rule may have leant on a dropped one); the fold configs, rerun by the real target on
their own sessions, give the out-of-fold agreement with a 95% Wilson interval.

From ``cv_max_sessions`` sessions on, k mining passes cost more than they teach: one
stable validation split (``validation:`` share) is mined around instead, and the
config mined on the rest ships as it is (no refit).
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from improver.experiments import Proposal
from improver.mining import MiningResult, marginal_gains

FOLD_SALT = "improver-fold/"
UNNAMED = {"text-cluster", "pattern"}  # groups named by mining from their notes: the name differs from fold to fold


def _digests(prefix: str, session_ids: Sequence[str]) -> np.ndarray:
    """The first 8 bytes of sha256(prefix + id) of each id, as unsigned integers (one numpy read)."""
    sha256 = hashlib.sha256
    return np.frombuffer(b"".join([sha256(text.encode()).digest()[:8] for text in map(prefix.__add__, session_ids)]),
                         dtype=">u8")


def folds_of(session_ids: Sequence[str], folds: int) -> np.ndarray:
    """The stable fold (0..folds-1) of each session id; independent of the test split's hash."""
    return (_digests(FOLD_SALT, session_ids) % folds).astype(int)


def in_validation(session_ids: Sequence[str], share: float) -> np.ndarray:
    """Whether each session falls in the stable single validation split of this ``share``."""
    return _digests(FOLD_SALT + "validation/", session_ids) / 2.0**64 < share


def wilson_interval(agree: int, n: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """The 95% Wilson score interval of an agreement rate."""
    if n == 0:
        return None, None
    p = agree / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - margin), 4), round(min(1.0, centre + margin), 4)


@dataclass
class FoldRun:
    """One fold: its sessions (scored, never mined by it) and what the other folds mined."""

    fold: int
    scored: np.ndarray  # indices into the workspace's sessions
    result: MiningResult
    proposals: list[Proposal]
    effects: dict[str, int]  # proposal id -> agreements it adds on the fold's own sessions (replayed)
    guidance: list[str] = field(default_factory=list)


@dataclass
class CrossValidation:
    """What cross-validated mining found: the refit mining and, per refit precedent, its fold evidence."""

    mode: str  # "cv" (k folds and a refit) or "validation" (one split, no refit)
    folds: int
    result: MiningResult  # the mining whose proposals ship
    runs: list[FoldRun]
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)  # precedent name -> per-fold evidence

    def stable(self, precedent: str) -> bool:
        e = self.evidence.get(precedent)
        return bool(e and e["stable"])

    def manifest(self, kept: Sequence[Proposal]) -> dict[str, Any]:
        """The ``mining.cv`` record: mode, folds and each fold's rules that match a kept proposal."""
        names = {p.precedent: p.id for p in kept}
        folds = []
        for index, run in enumerate(self.runs):
            matched = {e["per_fold"][index]["rule"]: names[name] for name, e in self.evidence.items()
                       if name in names and e["per_fold"][index]["rule"]}
            rules = [p.model_dump(include={"id", "precedent", "decision", "when", "condition", "confidence", "reason",
                                           "entity_notes"}) | {"matches": matched[p.id]}
                     for p in run.proposals if p.id in matched]
            folds.append({"fold": run.fold, "scored_sessions": len(run.scored), "mined_sessions": run.result.sessions,
                          "proposals": rules, "guidance": run.guidance if rules else []})
        dropped = {name: e for name, e in self.evidence.items() if not e["stable"]}
        return {"mode": self.mode, "folds": self.folds, "fold_runs": folds, "dropped": dropped}


def family(precedent: str) -> str:
    """A precedent's group name: mining names a group's second and third rules ``name-2``, ``name-3``."""
    return re.sub(r"-\d+$", "", precedent)


def matching(proposal: Proposal, candidates: Sequence[Proposal],
             rows: Callable[[Proposal], np.ndarray] | None = None) -> Proposal | None:
    """The fold proposal that is the same precedent: same name and decision, else same condition and
    decision, else (given ``rows``, each proposal's matched sessions) the rule of the same group and
    decision that matches most of the proposal's sessions, if it matches at least half of them. Groups
    mining named from their notes (text clusters, residual patterns) are named anew in every fold, so
    any two of them count as the same group.

    A group may be explained by one rule in a fold and by two in the refit (Marketing and Sales
    panic buys as one rule or as ``marketing-panic-buy`` and ``marketing-panic-buy-2``): the
    refit's second rule is found when the fold's rule for the group decides most of its sessions."""
    for other in candidates:
        if other.precedent == proposal.precedent and other.decision == proposal.decision:
            return other
    for other in candidates:
        if other.when == proposal.when and other.decision == proposal.decision:
            return other
    if rows is None:
        return None
    mine = rows(proposal)
    best, overlap = None, 0
    for other in candidates:
        same_group = family(other.precedent) == family(proposal.precedent) or {other.source, proposal.source} <= UNNAMED
        if other.decision == proposal.decision and same_group:
            shared = int((rows(other) & mine).sum())
            if shared > overlap:
                best, overlap = other, shared
    return best if overlap and 2 * overlap >= int(mine.sum()) else None


def replay_effects(proposals: Sequence[Proposal], masks: np.ndarray, fallback: np.ndarray, human: np.ndarray) -> dict[str, int]:
    """Each proposal's marginal agreements on some sessions when its rules go first, ahead of ``fallback``."""
    if not proposals:
        return {}
    gains = marginal_gains(masks, [p.decision for p in proposals], fallback, human)
    return {p.id: g for p, g in zip(proposals, gains)}


def deployable(proposals: Sequence[Proposal], masks: np.ndarray, fallback: np.ndarray, human: np.ndarray) -> list[Proposal]:
    """The proposals that still add agreement as they will ship: together, in order, ahead of ``fallback``.

    Mining judged each rule inside its whole decision list; stability selection may drop a
    rule that shielded a later one (a broader rule it kept off rows the parent's rules
    decide well). So the kept proposals are replayed on their own, ahead of the parent's
    decisions, and the one adding least is dropped while it adds nothing."""
    kept = list(range(len(proposals)))
    while kept:
        gains = marginal_gains(masks[kept], [proposals[i].decision for i in kept], fallback, human)
        worst = min(range(len(kept)), key=lambda j: (gains[j], -j))
        if gains[worst] > 0:
            break
        kept.pop(worst)
    return [proposals[i] for i in kept]


def select(refit: list[Proposal], runs: list[FoldRun], folds: int,
           rows: Callable[[Proposal], np.ndarray] | None = None) -> dict[str, dict[str, Any]]:
    """Per refit proposal: which folds found it, their out-of-fold effects, and whether it is stable.

    Stable means found in more than half of the folds with a summed effect that is not
    negative (at 130 sessions a fold scores ~26 of them, so a correct rule often adds 0
    there; requiring > 0 cost 0.9 points on fresh cases, see docs/scoring.md)."""
    evidence = {}
    for proposal in refit:
        per_fold, found, total = [], 0, 0
        for run in runs:
            match = matching(proposal, run.proposals, rows)
            effect = run.effects.get(match.id, 0) if match else 0
            found += match is not None
            total += effect
            per_fold.append({"fold": run.fold, "found": match is not None, "rule": match.id if match else None,
                             "effect": effect, "sessions": len(run.scored)})
        evidence[proposal.precedent] = {"folds": len(runs), "found": found, "oof_effect": total,
                                        "stable": found * 2 > len(runs) and total >= 0, "per_fold": per_fold}
    return evidence
