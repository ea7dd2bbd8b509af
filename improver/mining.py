"""Mine the disagreements: precedents, their explaining conditions, and meta-findings.

Input is the training sessions (held-out sessions are never mined) and the decisions
the current experiment's agent gives on them. Precedent groups come from the
reviewers' precedent tags; untagged reviews that read like a tagged precedent join it,
and the rest are clustered by their reasoning text. Each group, split by the human
decision, is explained by an induced rule (see ``rules``) with support, precision over
all training sessions (agreements too), conflicts and evidence; a group's decisions
too rare to stand alone become exceptions inside its rule, as a reviewer's "reject, but
small ones pass" is one precedent. What is left of the
disagreements is mined once more as unnamed patterns. Rules are ordered and kept only
when replaying them over the training sessions gains agreement.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import replace
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, Field

from improver import text
from improver.conditions import describe
from improver.features import Test, build_tests, case_columns, numeric_column, pack, shared_columns, unpack, words
from improver.models import ReviewedSession
from improver.rules import InducedRule, RuleInducer

ESCALATION_WORDS = ("flag", "escalat", "review", "defer", "hold", "refer")
MAX_RULES_PER_GROUP = 3
# an untagged note joins the tagged precedent it reads like from this cosine similarity to the precedent's
# notes' centre: a precedent with two kinds of note ("reject", "small ones pass") has its centre between them
ASSIGN_SIMILARITY = 0.2
NAMED_MIN_COUNT = 2  # requests a keyword test needs when the reviewers' notes on disagreements use the word
# a group's decision with fewer sessions than this share of its main decision's (or than the evidence minimum) is
# an exception inside the main rule, not a rule of its own: a precedent's two noisy flips beside two real
# exceptions would otherwise force one rule to cover all four
MINOR_SHARE = 0.5
RUN_GAP = 0.25  # a gap wider than this share of a group's range of a number splits its values into runs
MANY_OUTLIERS = 2  # outliers, in evidence minimums, from which an exception below the minimum needs a named test
MIN_EXCEPTION = 2  # sessions an exception needs to count its rule's evidence as its own (one is a noisy review)


class Precedent(BaseModel):
    """A group of human decisions explained by a condition on case fields."""

    name: str
    source: Literal["tag", "text-cluster", "pattern"]
    decision: str
    condition: dict[str, dict] | None = None
    description: str = ""
    group_size: int = Field(description="training sessions in the group with this decision")
    support: int = Field(0, description="group sessions the condition covers")
    evidence: int = Field(0, description="sessions of the precedent its rule and its exceptions cover together "
                                         "(an exception's own support of one session is noise, not evidence)")
    covered: int = Field(0, description="training sessions the condition covers")
    precision: float = Field(0.0, description="covered sessions whose human decision is the rule's")
    expected_gain: int = Field(0, description="training agreements gained when replayed after the parent")
    disagreements: int = 0
    evidence_sessions: list[str] = Field(default_factory=list)
    conflicts: list[str] = Field(default_factory=list, description="covered sessions the humans decided otherwise")
    inferred_from_text: int = 0
    quotes: list[str] = Field(default_factory=list)
    weak: bool = False


class Finding(BaseModel):
    kind: Literal["confident-but-overridden", "policy-ignored", "over-escalation", "reviewer-noise"]
    summary: str
    count: int
    sessions: list[str] = Field(default_factory=list)


class MiningResult(BaseModel):
    sessions: int
    disagreements: int
    agreement: float
    ceiling: float = Field(description="best agreement reachable given conflicting signatures")
    precedents: list[Precedent]
    findings: list[Finding]

    @property
    def proposable(self) -> list[Precedent]:
        return [p for p in self.precedents if not p.weak and p.condition and p.expected_gain > 0]


def is_escalation(decision: str) -> bool:
    return any(word in decision.lower() for word in ESCALATION_WORDS)


def _groups(sessions: Sequence[ReviewedSession], disagree: np.ndarray, min_evidence: int) -> tuple[dict[tuple[str, str], list[int]], dict[str, int]]:
    """Session indices by (group name, source); untagged notes inferred or clustered."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    tagged: dict[str, list[str]] = defaultdict(list)
    untagged: list[int] = []
    for i, s in enumerate(sessions):
        if s.precedent:
            groups[(s.precedent, "tag")].append(i)
            tagged[s.precedent].append(s.human_reasoning)
        else:
            untagged.append(i)
    inferred: Counter = Counter()
    assigned = text.assign_to_precedents(tagged, [sessions[i].human_reasoning for i in untagged],
                                         min_similarity=ASSIGN_SIMILARITY)
    leftover = []
    for i, name in zip(untagged, assigned):
        if name:
            groups[(name, "tag")].append(i)
            inferred[name] += 1
        elif disagree[i]:
            leftover.append(i)
    labels = _merge_by_mention(text.cluster_notes([sessions[i].human_reasoning for i in leftover]),
                               [sessions[i] for i in leftover], 2 * min_evidence)
    for label, members in text.group_indices(labels).items():
        if label == -1:
            continue
        indices = [leftover[m] for m in members]
        name = text.cluster_name([sessions[i].human_reasoning for i in indices])
        groups[(name, "text-cluster")].extend(indices)
    return groups, dict(inferred)


def _band_tests(numbers: dict[str, np.ndarray], groups: list[list[int]], min_evidence: int) -> list[Test]:
    """Band tests (``lo <= x < hi``) where a group's values of a number fall in separate runs, one a
    run of ``min_evidence`` values or more: a precedent may hold in two bands (requests just under
    each approval tier) that no single threshold holds and the search's quantile cuts miss by far at
    a few hundred reviews. Runs split at gaps wider than ``RUN_GAP`` of the group's range; a kept
    band's cuts move to the roundest numbers next to its own rows (``RuleInducer._placed``).
    ``numbers``: each number field's values as floats."""
    found: dict[tuple[str, tuple[float, float]], Test] = {}
    for path, column in numbers.items():
        for indices in groups:
            held = np.sort(column[indices])
            held = held[np.isfinite(held)]
            if len(held) < min_evidence or held[-1] == held[0]:
                continue
            runs = np.split(held, np.flatnonzero(np.diff(held) > RUN_GAP * (held[-1] - held[0])) + 1)
            for run in runs if len(runs) > 1 else ():
                band = (float(run[0]), float(np.nextafter(run[-1], np.inf)))
                if len(run) >= min_evidence and (path, band) not in found:
                    found[path, band] = Test(path, "band", band, pack((column >= band[0]) & (column < band[1])))
    return list(found.values())


def _mentions(session: ReviewedSession) -> tuple:
    """The case's short text values (a department, a vendor) its reviewer's note names, sorted."""
    note = _spaced_words(session.human_reasoning)
    return tuple(sorted({v for v in session.case.values() if type(v) is str and 1 < len(v) <= 25
                         and _spaced_words(v) in note}))


@lru_cache(maxsize=65536)
def _spaced_words(text: str) -> str:
    """A text's lower-case words and numbers, one space before, between and after each (cached: notes
    and case values repeat)."""
    return f" {' '.join(re.findall(r'[a-z0-9]+', text.lower()))} "


def _merge_by_mention(labels: list[int], sessions: Sequence[ReviewedSession], min_size: int) -> list[int]:
    """Clusters whose notes mostly give one decision and name the same case values are one
    piece of knowledge worded in several ways (a reviewer's reasoning templates): one label each.
    Only clusters each short of ``min_size`` sessions merge (larger ones keep finer distinctions),
    and only when together they hold ``min_size`` (fewer make a rule too broad to trust)."""
    members = text.group_indices(labels)
    merged = {}
    keys: dict[tuple, int] = {}
    for label in sorted(k for k in members if k != -1):
        votes = Counter((sessions[i].human_decision, _mentions(sessions[i])) for i in members[label])
        key, count = min(votes.items(), key=lambda kv: (-kv[1], repr(kv[0])))
        small = len(members[label]) < min_size
        merged[label] = keys.setdefault(key, label) if small and key[1] and 2 * count > len(members[label]) else label
    sizes = Counter()
    for label, target in merged.items():
        sizes[target] += len(members[label])
    merged = {label: target if sizes[target] >= min_size else label for label, target in merged.items()}
    return [merged.get(label, label) for label in labels]


def _ceiling(sessions: Sequence[ReviewedSession], rules_fields: set[str], keywords: set[str],
             shared: dict | None = None) -> tuple[float, list[str]]:
    """Agreement reachable if identical-looking cases get one decision each; and the sessions whose
    look-alikes were decided otherwise (by signature in order of first appearance, then session order)."""
    if not sessions:
        return 0.0, []
    cases = [s.case for s in sessions]
    columns = [_signature_parts(values, keywords) for values in case_columns(cases, sorted(rules_fields), shared).values()]
    signature = _codes(zip(*columns) if columns else [()] * len(sessions), len(sessions))
    human = _codes((s.human_decision for s in sessions), len(sessions))
    pairs, counts = np.unique(signature * (int(human.max()) + 1) + human, return_counts=True)
    owner = pairs // (int(human.max()) + 1)  # each (signature, decision) pair's signature
    largest = np.zeros(int(signature.max()) + 1, dtype=np.int64)
    np.maximum.at(largest, owner, counts)
    mixed = np.bincount(owner, minlength=len(largest)) > 1  # signatures with more than one human decision
    order = np.argsort(signature, kind="stable")
    noisy = [sessions[i].session_id for i in order[mixed[signature[order]]]]
    return int(largest.sum()) / len(sessions), noisy


def _codes(values, n: int) -> np.ndarray:
    """A code per value, numbered in order of first appearance."""
    index: dict = {}
    return np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=n)


def _signature_parts(values: list, keywords: set[str]) -> list:
    """Each value as a signature part: a long text by the keywords it holds, anything else by its repr
    (a text's part found once per distinct text)."""
    known: dict[str, object] = {}
    parts = []
    for value in values:
        if type(value) is str:
            part = known.get(value)
            if part is None:
                part = known[value] = tuple(sorted(words(value) & keywords)) if len(value) > 25 else repr(value)
        else:
            part = tuple(sorted(words(value) & keywords)) if isinstance(value, str) and len(value) > 25 else repr(value)
        parts.append(part)
    return parts


def mine(sessions: Sequence[ReviewedSession], current: Sequence[dict] | None = None,
         bands: dict[str, list[float]] | None = None, min_evidence: int = 3,
         entity_fields: Sequence[str] = (), shared: dict[str, Sequence] | None = None) -> MiningResult:
    """Precedents and meta-findings over training sessions, against the current agent decisions.
    ``shared``: the cases' top-level fields as columns (``shared_columns``), when the caller has them."""
    rows = len(sessions)
    if current is None:  # the decisions recorded in the traces
        current = [{"decision": s.agent_decision, "confidence": s.agent_confidence, "cited": s.cited} for s in sessions]
    agent = np.array([row["decision"] for row in current], dtype=object)
    human = np.array([s.human_decision for s in sessions], dtype=object)
    disagree = agent != human
    if rows == 0:
        return MiningResult(sessions=0, disagreements=0, agreement=0.0, ceiling=0.0, precedents=[], findings=[])
    # a word of the reviewers' notes on disagreements that the case texts hold is a candidate test from two
    # requests (the reason she wrote down), other words from the evidence minimum
    named = frozenset().union(*map(words, {sessions[i].human_reasoning for i in np.flatnonzero(disagree).tolist()}))
    cases = [s.case for s in sessions]
    shared = shared_columns(cases) if shared is None else shared  # read once for the tests and the ceiling
    tests = build_tests(cases, min_count=min_evidence, bands=bands, named=named, shared=shared,
                        named_min_count=min(NAMED_MIN_COUNT, min_evidence))
    groups, inferred = _groups(sessions, disagree, min_evidence)
    thresholded = sorted({t.field for t in tests if t.op in ("lt", "ge")})  # every number field with two values or more
    numbers = {path: numeric_column(values) for path, values in case_columns(cases, thresholded, shared).items()}
    tests += _band_tests(numbers, list(groups.values()), min_evidence)
    inducer = RuleInducer(tests, rows, preferred_fields=tuple(entity_fields), prior=float(1 - disagree.mean()),
                          numbers=numbers, fixed_cuts=bands)
    decided = {d: human == d for d in set(human)}  # each decision's rows, compared once
    correct_bits = {d: pack(rows_of) for d, rows_of in decided.items()}

    # A decision list: smaller (more specific) groups first; each later rule is judged only
    # on the rows no earlier rule decides, as the target's first-match overlay will apply them.
    # A group's decisions with too few sessions to stand alone (under the evidence minimum or
    # under MINOR_SHARE of the main decision's) are exceptions inside its main rule (placed
    # before it); the precedent's evidence counts them all.
    jobs = []
    for (name, source), indices in groups.items():
        sizes = Counter(human[i] for i in indices)
        by_decision = sizes.most_common()
        least = max(min_evidence, MINOR_SHARE * by_decision[0][1])  # fewer sessions: an exception, not a rule
        few = [i for i in indices if human[i] != by_decision[0][0] and sizes[human[i]] < least]
        for rank, (decision, size) in enumerate(by_decision):
            if rank and size < least:
                continue
            members = [i for i in indices if human[i] == decision]
            label = name if rank == 0 else f"{name}--{decision}"
            jobs.append((len(members) + (len(few) if rank == 0 else 0), label, source, decision, members,
                         inferred.get(name, 0) if rank == 0 else 0, few if rank == 0 else []))
    undecided = np.ones(rows, dtype=bool)
    candidates: list[tuple[Precedent, InducedRule | None]] = []
    for _size, label, source, decision, members, inferred_count, few in sorted(jobs, key=lambda j: (j[0], j[1])):
        found = _explain(label, source, decision, members, few, inducer, decided, correct_bits, disagree, sessions,
                         min_evidence, inferred_count, undecided)
        candidates += found
        for _p, rule in found:
            if rule is not None:
                undecided &= ~unpack(rule.bits, rows)

    accepted = [(p, r) for p, r in candidates if r is not None]
    residual = disagree & undecided
    for decision in sorted(set(human[residual])):
        members = [i for i in np.flatnonzero(residual) if human[i] == decision]
        name = f"pattern-{decision}-" + text.cluster_name([sessions[i].human_reasoning for i in members], 2)
        found = _explain(name, "pattern", decision, members, [], inducer, decided, correct_bits, disagree, sessions,
                         min_evidence, 0, undecided)
        accepted += [(p, r) for p, r in found if r is not None]

    ordered = _number_repeats(_replay(accepted, decided, ~disagree, rows))
    names = {p.name for p, _ in ordered}
    weak = [p for p, r in candidates if r is None and p.name not in names]
    precedents = [p for p, _ in ordered] + weak
    used_fields = {t.field for _, r in ordered for t in r.tests} or {t.field for t in tests if t.op != "contains"}
    keywords = {str(t.value) for _, r in ordered for t in r.tests if t.op == "contains"}
    ceiling, noisy = _ceiling(sessions, used_fields, keywords, shared)
    findings = _findings(sessions, current, agent, human, noisy)
    return MiningResult(sessions=rows, disagreements=int(disagree.sum()), agreement=float(1 - disagree.mean()),
                        ceiling=ceiling, precedents=precedents, findings=findings)


def _explain(name, source, decision, members, few, inducer, decided, correct_bits, disagree, sessions, min_evidence,
             inferred, undecided):
    """Up to MAX_RULES_PER_GROUP covering rules for one group, over the undecided rows,
    each with its exceptions for ``few`` (the group's sessions decided otherwise, too few
    to stand alone); a weak precedent when none. ``decided``: each human decision's rows."""
    rows = len(sessions)
    remaining = np.zeros(rows, dtype=bool)
    remaining[members] = True
    remaining &= undecided
    aside = np.zeros(rows, dtype=bool)
    aside[list(few)] = True
    undecided = undecided.copy()
    found: list[tuple[Precedent, InducedRule | None]] = []
    min_support = min_evidence if not few else max(1, min(len(members), min_evidence - len(few)))
    rules = 0
    while rules < MAX_RULES_PER_GROUP and remaining.sum() >= min_support:
        rule = inducer.induce(pack(remaining), correct_bits[decision], min_support, within=pack(undecided & ~aside),
                              hint=name if source == "tag" else "", notes=[sessions[i].human_reasoning for i in members])
        if rule is None:
            break
        mask = _matched(rule, rows)
        exceptions = _exceptions(name, source, rule, mask & undecided, aside, inducer, decided, correct_bits,
                                 disagree, sessions, len(members) + len(few), min_evidence)
        hits = int((mask & remaining).sum()) + sum(p.support for p, _ in exceptions)
        if hits < min_evidence:
            break
        found += [(p.model_copy(update={"evidence": hits if p.support >= MIN_EXCEPTION else p.support}), r)
                  for p, r in exceptions]
        rule = replace(rule, bits=pack(mask & undecided))
        group_hits = np.flatnonzero(mask & remaining).tolist()
        evidence = sorted(group_hits, key=lambda i: (not disagree[i], sessions[i].session_id))
        conflicts = [sessions[i].session_id for i in np.flatnonzero(mask & ~decided[decision])[:20]]
        found.append((Precedent(
            name=name, source=source, decision=decision, condition=rule.condition(),
            description=describe(rule.condition()), group_size=len(members), support=len(group_hits), evidence=hits,
            covered=rule.covered, precision=round(rule.precision, 4),
            disagreements=int(disagree[mask & remaining].sum()),
            evidence_sessions=[sessions[i].session_id for i in evidence[:10]], conflicts=conflicts[:20],
            inferred_from_text=inferred, quotes=text.representative_quotes([sessions[i].human_reasoning for i in evidence]),
        ), rule))
        rules += 1
        remaining &= ~mask
        undecided &= ~mask
    if not found and (disagree[members].any() or disagree[list(few)].any()):
        everyone = list(members) + list(few)
        found.append((Precedent(
            name=name, source=source, decision=decision, group_size=len(members), weak=True,
            disagreements=int(disagree[everyone].sum()),
            evidence_sessions=[sessions[i].session_id for i in everyone[:10]], inferred_from_text=inferred,
            quotes=text.representative_quotes([sessions[i].human_reasoning for i in everyone]),
        ), None))
    return found


def _matched(rule: InducedRule, rows: int) -> np.ndarray:
    """The rows a rule's tests match (anywhere, not only where it was induced)."""
    return unpack(np.bitwise_and.reduce([t.bits for t in rule.tests]), rows)


def _exceptions(name, source, rule, scope, aside, inducer, decided, correct_bits, disagree, sessions, group_size,
                min_evidence):
    """Rules inside ``rule`` (over ``scope``, the rows it decides) for the group's sessions
    set ``aside`` there: those the reviewers decided otherwise, too few to stand alone. Drawn
    from MANY_OUTLIERS times ``min_evidence`` outliers or more (a large group's noisy reviews),
    one with fewer sessions than ``min_evidence`` needs a test of its own that their notes
    name: among so many, two share some chance condition (a date, at 100k sessions)."""
    rows = len(sessions)
    outliers = scope & aside
    found = []
    for decision in sorted(d for d, rows_of in decided.items() if (outliers & rows_of).any()):
        positives = outliers & decided[decision]
        inner = inducer.induce(pack(positives), correct_bits[decision], 1, within=pack(scope & (positives | ~outliers)),
                               notes=[sessions[i].human_reasoning for i in np.flatnonzero(positives)])
        if inner is None:
            continue
        own = tuple(t for t in inner.tests if all(t is not u for u in rule.tests))
        combined = replace(inner, tests=rule.tests + own)
        mask = _matched(combined, rows)
        hits = np.flatnonzero(mask & positives)
        if len(hits) < min_evidence <= positives.sum() / MANY_OUTLIERS and not any(inducer.named(t) for t in own):
            continue
        found.append((Precedent(
            name=f"{name}--{decision}", source=source, decision=decision, condition=combined.condition(),
            description=describe(combined.condition()), group_size=group_size, support=len(hits),
            covered=int(mask.sum()), precision=round(float(decided[decision][mask].mean()), 4),
            disagreements=int(disagree[mask & positives].sum()),
            evidence_sessions=[sessions[i].session_id for i in hits[:10]],
            conflicts=[sessions[i].session_id for i in np.flatnonzero(mask & ~decided[decision])[:20]],
            quotes=text.representative_quotes([sessions[i].human_reasoning for i in hits]),
        ), combined))
    return found


def _replay(accepted, decided, agreed, rows):
    """Keep the rules of the decision list that add agreement over the training rows.

    A rule's gain is its marginal value: agreement with the whole list minus agreement
    without it. An exception that confirms the agent (so that a broader rule after it
    stays precise) gains nothing alone but loses agreement when removed, so it stays.
    ``decided``: each human decision's rows; ``agreed``: the rows where the agent agrees.
    """
    ordered = list(accepted)
    matched = [_matched(rule, rows) for _, rule in ordered]  # unpacked once, not on every round
    gains: list[int] = []
    while ordered:
        gains = first_match_gains(np.stack(matched), [decided[p.decision] for p, _ in ordered], agreed)
        worst = min(range(len(ordered)), key=lambda i: (gains[i], -i))
        if gains[worst] > 0:
            break
        ordered.pop(worst)
        matched.pop(worst)
    for (precedent, _rule), gain in zip(ordered, gains if ordered else []):
        precedent.expected_gain = gain
    return ordered


def _number_repeats(ordered):
    """Name a group's kept rules ``name``, ``name-2``, ... in list order: a group may
    explain its sessions with several rules, and the replay may drop any of them."""
    seen: Counter = Counter()
    for precedent, _rule in ordered:
        seen[precedent.name] += 1
        if seen[precedent.name] > 1:
            precedent.name = f"{precedent.name}-{seen[precedent.name]}"
    return ordered


def marginal_gains(matched: np.ndarray, decisions: Sequence[str], agent: np.ndarray, human: np.ndarray) -> list[int]:
    """For each rule of a first-match list, agreement with it minus agreement without it.

    ``matched`` is rules × rows. Removing a rule only changes the rows it matches first;
    they fall through to the next matching rule, or to ``agent`` when none matches."""
    agrees = {d: human == d for d in set(decisions)}  # compared once per distinct decision, not per rule
    return first_match_gains(matched, [agrees[d] for d in decisions], agent == human)


def first_match_gains(matched: np.ndarray, rule_agrees: Sequence[np.ndarray], fallback_agrees: np.ndarray) -> list[int]:
    """``marginal_gains`` from each rule's rows where its decision is the human's (``rule_agrees``)
    and the rows where the decision without any rule is (``fallback_agrees``)."""
    matched = np.asarray(matched, dtype=bool)
    none, rows = matched.shape
    first, second = np.full(rows, none), np.full(rows, none)  # each row's first and second matching rule
    for k in range(none - 1, -1, -1):
        hit = matched[k]
        second[hit] = first[hit]
        first[hit] = k
    agrees_with = np.stack([*rule_agrees, fallback_agrees])  # [k, row]: rule k (the fallback, for k = none) agrees
    every = np.arange(rows)
    change = agrees_with[first, every].astype(int) - agrees_with[second, every].astype(int)
    return [int(gain) for gain in np.bincount(first, weights=change, minlength=none + 1)[:none]]


def _findings(sessions, current, agent, human, noisy) -> list[Finding]:
    findings = []
    overridden = np.flatnonzero(agent != human).tolist()
    confident = [i for i in overridden if str(current[i].get("confidence") or "").lower() == "high"]
    if confident:
        pairs = Counter(f"{agent[i]} -> {human[i]}" for i in confident)
        findings.append(Finding(
            kind="confident-but-overridden", count=len(confident),
            summary=f"{len(confident)} overrides hit decisions the agent made with high confidence "
                    f"({', '.join(f'{k}: {v}' for k, v in pairs.most_common(3))}); its confidence does not track the reviewers.",
            sessions=[sessions[i].session_id for i in confident[:20]]))
    escalating = {d: is_escalation(str(d)) for d in {*agent, *human}}  # per distinct decision, not per row
    escalated = [i for i, d in enumerate(agent.tolist()) if escalating[d]]
    over = [i for i in escalated if not escalating[human[i]]]
    if over:
        findings.append(Finding(
            kind="over-escalation", count=len(over),
            summary=f"{len(over)} of {len(escalated)} escalations were decided outright by the reviewer "
                    f"({Counter(human[i] for i in over).most_common(1)[0][0]} most often): the agent lacked permission, "
                    "not information. The proposed rules say when it may decide.",
            sessions=[sessions[i].session_id for i in over[:20]]))
    tagged: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(sessions):
        if s.precedent:
            tagged[s.precedent].append(i)
    for tag in sorted(tagged):
        members = tagged[tag]
        tag_words = {w for w in re.split(r"[^a-z0-9]+", tag.lower()) if len(w) >= 5}
        cited = Counter(c for i in members for c in sorted(set(current[i].get("cited") or [])))
        for item, n in cited.items():
            item_words = {w for w in re.split(r"[^a-z0-9]+", item.lower()) if len(w) >= 5}
            if not (tag_words & item_words and n >= 0.8 * len(members)):
                continue
            ignored = [sessions[i].session_id for i in members if item in (current[i].get("cited") or []) and agent[i] != human[i]]
            if ignored:
                findings.append(Finding(
                    kind="policy-ignored", count=len(ignored),
                    summary=f"'{item}' was in the agent's tool output in {n} of {len(members)} sessions of "
                            f"precedent {tag}, and the reviewer overrode {len(ignored)} of them: the policy "
                            "is present in the tool output but invisible in the agent's decision.",
                    sessions=ignored[:20]))
    if noisy:
        findings.append(Finding(
            kind="reviewer-noise", count=len(noisy),
            summary=f"{len(noisy)} sessions share identical case features with sessions the reviewers decided "
                    "differently; no rule can agree with all of them.", sessions=noisy[:20]))
    return findings
