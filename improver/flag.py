"""Predicted overrides: unreviewed decisions the reference config would decide differently.

``flag`` replays the learned rules of the reference experiment (the accepted one, else
the best scored one) over the agent decisions that no human has reviewed yet, first
matching rule wins as in the target, and lists each decision a rule would change: what
the humans would probably override today, with the rule, its evidence sessions and the
rule's measured precision: out-of-fold when the experiment was cross-validated (each
fold's own version of the rule on the fold's sessions), else on training sessions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from improver.errors import ImproverError
from improver.features import Columns
from improver.queue import first_rule, pending_decisions, proposal_sources, reference_experiment
from improver.runtime import load_overlay

if TYPE_CHECKING:
    from improver.experiments import Experiment
    from improver.workspace import Workspace


class Flag(BaseModel):
    """One predicted override: what the agent decided, what the rule predicts the humans decide, and why."""

    session_id: str
    ts: str | None
    agent_decision: str
    predicted: str
    rule: str
    precedent: str
    condition: str
    precision: float | None
    precision_kind: str
    evidence_sessions: list[str]


def out_of_fold_precision(ws: "Workspace", proposer: "Experiment", proposal) -> float | None:
    """Precision of the proposal's rule on sessions it was not mined from: each fold's own version of the
    rule (``manifest.yaml`` ``mining.cv.fold_runs``) replayed on that fold's sessions; None without folds."""
    cv = proposer.manifest.mining.get("cv") or {}
    mode, groups = ws.fold_plan
    runs = {run["fold"]: run for run in cv.get("fold_runs", [])}
    if cv.get("mode") != "cv" or mode != "cv" or len(runs) != len(groups):
        return None
    covered = agreed = 0
    for entry in (proposal.cv or {}).get("per_fold", []):
        rule = next((p for p in runs.get(entry.get("fold"), {}).get("proposals", []) if p["id"] == entry.get("rule")), None)
        if not entry.get("found") or rule is None:
            continue
        fold = [ws.sessions[i] for i in groups[entry["fold"]]]
        hits = np.flatnonzero(Columns([s.case for s in fold]).mask(rule["when"]))
        covered += len(hits)
        agreed += sum(fold[i].human_decision == rule["decision"] for i in hits)
    return round(agreed / covered, 4) if covered else None


def rule_precision(ws: "Workspace", proposer: "Experiment | None", proposal) -> tuple[float | None, str]:
    """The rule's out-of-fold precision when its experiment was cross-validated, else its training precision."""
    if proposal is None:
        return None, "unknown"
    precision = out_of_fold_precision(ws, proposer, proposal) if ws.sessions else None
    return (precision, "out-of-fold") if precision is not None else (proposal.precision, "training")


def flag(ws: "Workspace", since: str | None = None, experiment_id: str | None = None,
         min_precision: float = 0.0) -> tuple[str, list[Flag]]:
    """The reference experiment's id and its predicted overrides among unreviewed decisions: the first
    matching rule decides, as in the target; kept when its precision is at least ``min_precision``
    (a rule of unknown precision counts as 0)."""
    reference = ws.experiments.get(experiment_id) if experiment_id else reference_experiment(ws)
    if reference is None:
        raise ImproverError("no experiment with learned rules yet: run `improver cycle` (and accept one with "
                            "`improver review EXP --accept …`) before flagging predicted overrides")
    with ws.store() as store:
        pending = pending_decisions(store.db, since)
    rules = load_overlay(reference.config_dir).rules
    if not rules and experiment_id:
        raise ImproverError(f"{reference.id} has no learned rules to flag with: name an experiment a cycle made "
                            "(`improver log` lists them), or leave out --experiment")
    if not pending or not rules:
        return reference.id, []
    sources = proposal_sources(reference, ws)
    precisions = {rule: rule_precision(ws, proposer, proposal) for rule, (proposal, proposer) in sources.items()}
    chosen = first_rule(Columns([p.case for p in pending]), rules)
    flags = []
    for row in np.flatnonzero(chosen >= 0):
        rule, item = rules[chosen[row]], pending[row]
        precision, kind = precisions.get(rule.id, (None, "unknown"))
        if rule.decision == item.decision or (min_precision > 0 and (precision or 0) < min_precision):
            continue
        proposal, _ = sources.get(rule.id, (None, None))
        flags.append(Flag(session_id=item.session_id, ts=item.ts, agent_decision=item.decision, predicted=rule.decision,
                          rule=rule.id, precedent=proposal.precedent if proposal else "",
                          condition=proposal.condition if proposal else "", precision=precision, precision_kind=kind,
                          evidence_sessions=list(proposal.evidence_sessions[:10]) if proposal else []))
    return reference.id, flags


def as_dicts(flags: list[Flag]) -> list[dict]:
    return [f.model_dump() for f in flags]
