"""Turn mined precedents into proposals and render an experiment's config from them.

Proposals land on the target's three surfaces (``improver.runtime``): a learned rule
per precedent, entity notes for the entities a rule names, and prompt lines that state
the rules and meta-findings in words. A config is always rendered from the parent's
config plus a list of proposals, so any subset can be rebuilt exactly (gating, review).
"""
from __future__ import annotations

from typing import Iterable

import yaml

from improver.experiments import YAML_DUMPER, Proposal
from improver.mining import MiningResult, Precedent
from improver.runtime import NOTES_FILE, PROMPT_FILE, RULES_FILE, YAML_LOADER, parse_rules


PROMPT_HEADER = "## Learned from reviewer overrides"


def proposal_from(precedent: Precedent, entity_fields: Iterable[str], taken: set[str], cycle: int) -> Proposal:
    """A rule proposal for a precedent, with a unique id and its entity notes."""
    rule_id = precedent.name if precedent.name not in taken else f"{precedent.name}-c{cycle}"
    quote = precedent.quotes[0] if precedent.quotes else ""
    reason = (f"Reviewers decided {precedent.decision} in {precedent.support} matching sessions "
              f"({precedent.precision:.0%} of all matches)" + (f': "{quote}"' if quote else ""))
    notes: dict[str, dict[str, str]] = {}
    for field in entity_fields:
        value = (precedent.condition or {}).get(field, {}).get("eq")
        if value is not None:
            notes.setdefault(field, {})[str(value)] = (
                f"Precedent {rule_id}: when {precedent.description}, reviewers decide {precedent.decision}"
                + (f' ("{quote}")' if quote else "") + ".")
    return Proposal(
        id=rule_id, precedent=precedent.name, source=precedent.source, decision=precedent.decision,
        when=precedent.condition or {}, condition=precedent.description, reason=reason,
        support=precedent.support, covered=precedent.covered, precision=precedent.precision,
        evidence_sessions=precedent.evidence_sessions, conflicts=precedent.conflicts, quotes=precedent.quotes,
        entity_notes=notes, expected_effect={"train_gain": precedent.expected_gain},
    )


def build_proposals(result: MiningResult, entity_fields: Iterable[str], existing_rule_ids: set[str], cycle: int,
                    min_evidence: int = 3) -> list[Proposal]:
    taken = set(existing_rule_ids)
    proposals = []
    for precedent in result.proposable:
        if max(precedent.support, precedent.evidence) < min_evidence:  # a rule and its exceptions: one precedent
            continue
        proposal = proposal_from(precedent, entity_fields, taken, cycle)
        taken.add(proposal.id)
        proposals.append(proposal)
    return proposals


def guidance_from(result: MiningResult) -> list[str]:
    """Prompt lines for the meta-findings (what a rule alone does not say)."""
    lines = []
    for finding in result.findings:
        if finding.kind == "policy-ignored":
            lines.append("Apply every policy that check_policy returns; reviewers overrode decisions that ignored one: "
                         + finding.summary)
        elif finding.kind == "over-escalation":
            lines.append("Escalate only when no learned rule applies and the policy truly requires a human: "
                         + finding.summary)
        elif finding.kind == "confident-but-overridden":
            lines.append("Lower your confidence when a case resembles a learned precedent you are not applying.")
    return lines


def render_config(parent_config: dict[str, str], proposals: list[Proposal], guidance: list[str], cycle: int) -> dict[str, str]:
    """The parent's config with the proposals' rules prepended, notes merged and prompt lines added."""
    config = dict(parent_config)
    if not proposals and not guidance:
        return config
    old_rules = [r.__dict__ for r in parse_rules(yaml.load(config.get(RULES_FILE, "") or "null", Loader=YAML_LOADER), RULES_FILE)]
    new_rules = [{"id": p.id, "when": p.when, "decision": p.decision, "confidence": p.confidence, "reason": p.reason}
                 for p in proposals]
    config[RULES_FILE] = (
        "# Learned by improver from human overrides; first matching rule wins.\n"
        + yaml.dump({"rules": new_rules + old_rules}, Dumper=YAML_DUMPER, sort_keys=False, allow_unicode=True, width=100))
    notes = yaml.load(config.get(NOTES_FILE, "") or "null", Loader=YAML_LOADER) or {}
    for p in proposals:
        for field, by_value in p.entity_notes.items():
            for value, note in by_value.items():
                bucket = notes.setdefault(field, {}).setdefault(value, [])
                if note not in bucket:
                    bucket.append(note)
    if notes:
        config[NOTES_FILE] = yaml.dump(notes, Dumper=YAML_DUMPER, sort_keys=True, allow_unicode=True, width=100)
    lines = [f"- {p.id}: when {p.condition}, decide {p.decision}. {p.reason}" for p in proposals] + [f"- {g}" for g in guidance]
    fragment = config.get(PROMPT_FILE, "")
    section = f"{PROMPT_HEADER} (cycle {cycle})\n" + "\n".join(lines) + "\n"
    config[PROMPT_FILE] = (fragment.rstrip("\n") + "\n\n" if fragment.strip() else "") + section
    return config


def report(result: MiningResult, proposals: list[Proposal], title: str) -> str:
    """The mining report (markdown): precedents, weak groups, meta-findings, ceiling."""
    out = [f"# {title}", "",
           f"Mined {result.sessions} training sessions: {result.disagreements} disagreements, "
           f"agreement {result.agreement:.1%}, estimated ceiling {result.ceiling:.1%} (reviewer noise).", "",
           "## Proposals", "", "| id | decision | condition | support | precision | expected gain | evidence |",
           "|---|---|---|---|---|---|---|"]
    for p in proposals:
        out.append(f"| {p.id} | {p.decision} | {p.condition} | {p.support} | {p.precision:.0%} | "
                   f"{p.expected_effect.get('train_gain', 0):+.0f} | {', '.join(p.evidence_sessions[:5])} |")
    for p in proposals:
        out += ["", f"### {p.id}", f"- source: {p.source}; decision **{p.decision}** when `{p.condition}`",
                f"- covers {p.covered} training sessions; conflicts: {', '.join(p.conflicts[:10]) or 'none'}"]
        out += [f'- reviewer: "{q}"' for q in p.quotes]
    weak = [w for w in result.precedents if w.weak]
    if weak:
        out += ["", "## Weak or unexplained groups (not proposed)", ""]
        out += [f"- {w.name} ({w.source}, {w.decision}): {w.group_size} sessions, {w.disagreements} disagreements; "
                f"no condition with enough support and precision" for w in weak]
    if result.findings:
        out += ["", "## Meta-findings", ""]
        out += [f"- **{f.kind}** ({f.count}): {f.summary}" for f in result.findings]
    return "\n".join(out) + "\n"
