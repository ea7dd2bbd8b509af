"""Predicted overrides: unreviewed decisions the reference config would decide differently.

``flag`` replays the learned rules of the reference experiment (the accepted one, else
the best scored one) over the agent decisions that no human has reviewed yet, first
matching rule wins as in the target, and lists each decision a rule would change: what
the humans would probably override today, with the rule, its evidence sessions and the
rule's measured precision (out-of-fold when the experiment has it, else on training
sessions).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from improver.errors import ImproverError
from improver.features import Columns
from improver.queue import first_rule, pending_decisions, proposals_by_rule, reference_experiment
from improver.runtime import load_overlay

if TYPE_CHECKING:
    from improver.experiments import Experiment
    from improver.workspace import Workspace


@dataclass
class Flag:
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


def rule_precision(experiment: "Experiment", rule_id: str, proposal) -> tuple[float | None, str]:
    """The rule's out-of-fold precision from the experiment's results when scored with folds, else its mining one."""
    folds = ((experiment.results or {}).get("per_proposal") or {}).get(rule_id, {})
    if isinstance(folds, dict) and folds.get("oof_precision") is not None:
        return folds["oof_precision"], "out-of-fold"
    return (proposal.precision, "training") if proposal is not None else (None, "unknown")


def flag(ws: "Workspace", since: str | None = None, experiment_id: str | None = None) -> tuple[str, list[Flag]]:
    """The reference experiment's id and its predicted overrides among unreviewed decisions."""
    reference = ws.experiments.get(experiment_id) if experiment_id else reference_experiment(ws)
    if reference is None:
        raise ImproverError("no experiment with learned rules yet: run `improver cycle` (and accept one with "
                            "`improver review EXP --accept …`) before flagging predicted overrides")
    with ws.store() as store:
        pending = pending_decisions(store.db, since)
    rules = load_overlay(reference.config_dir).rules
    if not pending or not rules:
        return reference.id, []
    proposals = proposals_by_rule(reference, ws)
    chosen = first_rule(Columns([p.case for p in pending]), rules)
    flags = []
    for row in np.flatnonzero(chosen >= 0):
        rule, item = rules[chosen[row]], pending[row]
        if rule.decision == item.decision:
            continue
        proposal = proposals.get(rule.id)
        precision, kind = rule_precision(reference, rule.id, proposal)
        flags.append(Flag(item.session_id, item.ts, item.decision, rule.decision, rule.id,
                          proposal.precedent if proposal else "", proposal.condition if proposal else "",
                          precision, kind, list(proposal.evidence_sessions[:10]) if proposal else []))
    return reference.id, flags


def as_dicts(flags: list[Flag]) -> list[dict]:
    return [asdict(f) for f in flags]
