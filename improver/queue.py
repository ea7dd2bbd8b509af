"""The review queue: which unreviewed agent decisions humans should review next, and why.

Human review is the loop's scarce input. ``build_queue`` ranks the unreviewed decisions
in the trace store by what a human's answer would teach:

- **predicted override**: a rule of the reference config (the accepted experiment, else
  the best scored one) decides the case differently from the agent; the less evidence
  the rule has, the more a review teaches;
- **fold disagreement**: the reference's cross-validation fold models (each mined
  without one fold) decide the case differently from each other;
- **candidate precedent**: a precedent the last mining found but could not propose yet
  (too little evidence) covers the case and would decide it differently;
- **boundary**: a numeric value sits within ``BOUNDARY`` of a learned threshold;
- **coverage**: an entity value or agent decision with few or no reviews;
- **unexplained override**: a reviewed override the reference config still decides
  wrongly (a precedent too rare to have been learned) is explained by hypotheses, the
  tests and pairs of tests on its own field values; unreviewed cases in the hypotheses
  that past reviews support best (the most such overrides per reviewed case) are queued,
  so a rare precedent seen once is looked for around it instead of waiting for chance;
- **unlearned precedent**: likewise around the reviews tagged with a precedent that reviewers
  named only where they agreed with the agent and no rule has learned (mining sees no override
  of it, so nothing else looks for the cases of it the agent decides otherwise);
- **unconfirmed rule**: inside a learned rule, the cases it would change that hold values
  or words none of the reviewed cases it decides holds: where an exception to it could
  hide that no reviewer has confirmed the rule on.

Picks spread over reasons (each further pick for the same rule, entity or hypothesis
counts less, at most ``MAX_PER_KEY`` are taken for one in a batch, and at most
``MAX_REASON_SHARE`` of the ranked picks for one kind of reason),
and a stated share of the batch is drawn at random from what is left, every decision with the same
chance, so that agreement can still be estimated without bias. The draw is balanced
(``balanced_sample``): spread evenly over the agent's decisions, the entity fields and the
first banded number, so a batch's random picks stand for the traffic more closely than a plain
uniform draw's (on the benchmark's three pools the first batch's estimate has an SD of 4.8, 4.0
and 1.1 points, against 6.9, 5.7 and 6.1 for uniform draws). Every pick is recorded in the trace
store with how it was picked and its probability of being picked (1 for ranked picks,
``r / remaining`` for random ones); ``sampled_agreement`` turns reviews of recorded picks
into the random-share agreement and a weighted estimate for all traffic, in which ranked
picks count once and the random share stands for everything else.
"""
from __future__ import annotations

import gc
import heapq
import random
import sqlite3
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Iterable

import numpy as np
import yaml

from improver.conditions import MISSING
from improver.errors import ImproverError
from improver.experiments import Experiment, now
from improver.features import Columns, column_values, round_cut, words
from improver.runtime import load_overlay, parse_rules
from improver.store import _loads

if TYPE_CHECKING:
    from improver.workspace import Workspace

RANDOM_SHARE = 0.2
BOUNDARY = 0.1  # a value within 10% of a learned threshold is on its boundary
DECAY = 0.6  # each further pick for the same rule or entity in one batch counts this much less
MAX_PER_KEY = 3  # picks for one rule, precedent, region or entity in one batch, at most
MAX_REASON_SHARE = 0.5  # of a batch's ranked picks, at most this share for one kind of reason
MAX_MISSES = 20  # unexplained overrides explored per batch
SEARCH_ROWS = 5000  # pending decisions (an evenly spaced sample when more) their hypotheses are looked for in
HYPOTHESES_PER_MISS = 3  # the best-supported hypotheses queued around each
PRECEDENT_SEEDS = 3  # tagged reviews of an unlearned precedent looked around per batch
EDGE_PRIORITY = 0.55
UNCONFIRMED_PRIORITY = 0.6
UNCONFIRMED_SHARE = 0.05  # of the pending cases a rule changes, a value unseen in its reviewed cases held by this many
EDGE_TESTS = False
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)  # numeric cut points of the hypotheses
PICKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_picks (
    session_id TEXT PRIMARY KEY, batch TEXT NOT NULL, picked_by TEXT NOT NULL, reason TEXT,
    probability REAL NOT NULL, priority REAL, picked_at TEXT,
    pool INTEGER NOT NULL);  -- unreviewed, unpicked decisions the batch was picked from
CREATE TABLE IF NOT EXISTS queue_models (
    batch TEXT PRIMARY KEY, reference TEXT, rules TEXT NOT NULL);  -- the reference's rules when the batch was drawn
"""


@dataclass
class Pending:
    """An agent decision no human has reviewed yet."""

    session_id: str
    case: dict
    decision: str
    ts: str | None


@dataclass
class Pick:
    """One queued session: why it was picked and how likely it was to be picked."""

    session_id: str
    agent_decision: str
    picked_by: str  # predicted-override | fold-disagreement | candidate-precedent | boundary | coverage
    #                 | unexplained-override | unlearned-precedent | unconfirmed-rule | rule-edge | random
    reason: str
    priority: float
    probability: float
    predicted: str | None = None  # what the rule behind the pick would decide

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Queue:
    batch: str
    reference: str | None
    pending: int
    picks: list[Pick]
    random_share: float
    model: list[dict] = field(default_factory=list)  # the reference's rules when it was drawn (for model_assisted)

    def as_dict(self) -> dict:
        return {"batch": self.batch, "reference": self.reference, "pending": self.pending,
                "random_share": self.random_share, "picks": [p.as_dict() for p in self.picks]}


# --- the store's side -----------------------------------------------------------------
def pending_decisions(db: sqlite3.Connection, since: str | None = None) -> list[Pending]:
    """Agent decisions without any human review (at or after ``since``, an ISO 8601 date or timestamp,
    when given; compared as text with the stored timestamps), by session id."""
    sql = ("SELECT session_id, case_json, decision, ts FROM decisions"
           " WHERE session_id NOT IN (SELECT session_id FROM reviews)")
    args: tuple = ()
    if since:
        try:
            datetime.fromisoformat(since)
        except ValueError:
            raise ImproverError(f"since {since!r} is not an ISO 8601 date or timestamp: write it like 2026-11-01 "
                                "or 2026-11-01T09:00:00Z") from None
        sql += " AND COALESCE(ts, '') >= ?"
        args = (since,)
    return [Pending(row[0], _loads(row[1]), row[2], row[3]) for row in db.execute(sql + " ORDER BY session_id", args)]


def picked_decisions(db: sqlite3.Connection, picks: Iterable["Pick"]) -> dict[str, dict]:
    """Each pick's case and the agent's reasoning, by session id: what a reviewer reads before deciding."""
    ids = [p.session_id for p in picks]
    found: dict[str, dict] = {}
    for start in range(0, len(ids), 500):  # under SQLite's limit on bound parameters
        chunk = ids[start:start + 500]
        rows = db.execute(f"SELECT session_id, case_json, reasoning FROM decisions WHERE session_id IN "
                          f"({','.join('?' * len(chunk))})", chunk)
        found.update((row[0], {"case": _loads(row[1]), "agent_reasoning": row[2] or ""}) for row in rows)
    return found


def recorded_picks(db: sqlite3.Connection) -> dict[str, dict]:
    """Every recorded pick by session id: batch, picked_by, reason, probability, and its batch's pool size."""
    db.executescript(PICKS_SCHEMA)
    rows = db.execute("SELECT session_id, batch, picked_by, reason, probability, pool FROM queue_picks")
    return {r[0]: {"batch": r[1], "picked_by": r[2], "reason": r[3], "probability": r[4], "pool": r[5]} for r in rows}


def record(db: sqlite3.Connection, queue: Queue) -> None:
    """Record the batch's picks and its model, or none of them (ImproverError) when another
    ``improver queue`` recorded this batch, or one of these sessions, after it was drawn."""
    db.executescript(PICKS_SCHEMA)
    at = now()
    with db:
        try:
            db.execute("BEGIN IMMEDIATE")  # checked and written with no other writer in between
            if db.execute("SELECT 1 FROM queue_picks WHERE batch = ? LIMIT 1", (queue.batch,)).fetchone():
                raise sqlite3.IntegrityError(f"batch {queue.batch} exists")
            db.executemany("INSERT INTO queue_picks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # a session picked twice: refused
                           [(p.session_id, queue.batch, p.picked_by, p.reason, p.probability, p.priority, at, queue.pending)
                            for p in queue.picks])
            if queue.picks:
                db.execute("INSERT INTO queue_models VALUES (?, ?, ?)",
                           (queue.batch, queue.reference, yaml.safe_dump(queue.model, sort_keys=True)))
        except sqlite3.IntegrityError:
            raise ImproverError(f"another improver queue recorded batch {queue.batch} (or some of its sessions) after "
                                "this one was drawn; nothing of this one was recorded: run it again") from None
        except sqlite3.OperationalError as error:
            if "locked" not in str(error):
                raise
            raise ImproverError(f"the trace store stayed locked by another improver process (an ingest?), so batch "
                                f"{queue.batch} was not recorded: run this again when it finishes") from None


def recorded_models(db: sqlite3.Connection) -> dict[str, tuple[str | None, str]]:
    """Batch -> (reference id, its rules as YAML) for every batch recorded with the model the queue had."""
    db.executescript(PICKS_SCHEMA)
    return {r[0]: (r[1], r[2]) for r in db.execute("SELECT batch, reference, rules FROM queue_models")}


def next_batch(db: sqlite3.Connection) -> str:
    db.executescript(PICKS_SCHEMA)
    return f"q{db.execute('SELECT COUNT(DISTINCT batch) FROM queue_picks').fetchone()[0] + 1:04d}"


# --- the reference config -------------------------------------------------------------
def reference_experiment(ws: "Workspace") -> Experiment | None:
    """The newest accepted (or merged) experiment with rules, else the best scored one with rules."""
    experiments = [e for e in ws.experiments.all() if e.manifest.proposals]
    accepted = [e for e in experiments if e.status in ("accepted", "merged")]
    if accepted:
        return accepted[-1]
    scored = [(held_out_figure(e.results), e.id, e) for e in experiments if e.results and e.status != "rejected"]
    return max(scored, key=lambda row: row[:2])[2] if scored else None


def held_out_figure(results: dict) -> float:
    """An experiment's agreement on sessions it did not learn from: out-of-fold, else the test split, else in-sample."""
    for key in ("cv", "heldout", "train"):
        value = (results.get(key) or {}).get("agreement")
        if value is not None and (key != "cv" or results[key].get("mode") != "in-sample"):
            return value
    return 0.0


def proposals_by_rule(experiment: Experiment, ws: "Workspace") -> dict:
    """Every proposal behind the experiment's rules, its ancestors' included, by rule id."""
    return {rule: proposal for rule, (proposal, _) in proposal_sources(experiment, ws).items()}


def learned_precedents(reference: Experiment | None, ws: "Workspace") -> set[str]:
    """The precedents the reference config's rules were learned for."""
    if reference is None:
        return set()
    rules = {rule.id for rule in load_overlay(reference.config_dir).rules}
    return {proposal.precedent for rule, proposal in proposals_by_rule(reference, ws).items() if rule in rules}


def proposal_sources(experiment: Experiment, ws: "Workspace") -> dict:
    """Rule id -> (proposal, the experiment that proposed it), walking up the parents."""
    found: dict = {}
    while experiment is not None:
        for proposal in experiment.manifest.proposals:
            found.setdefault(proposal.id, (proposal, experiment))
        parent = experiment.manifest.parent
        experiment = ws.experiments.get(parent) if parent else None
    return found


def first_rule(columns: Columns, rules) -> np.ndarray:
    """Index of the first rule that matches each row (-1 for none): the decision-list order."""
    chosen = np.full(len(columns.cases), -1)
    for index, rule in enumerate(rules):
        chosen[(chosen < 0) & columns.mask(rule.when)] = index
    return chosen


# --- ranking ---------------------------------------------------------------------------
@dataclass
class _Reason:
    priority: float
    key: str
    picked_by: str
    text: str
    predicted: str | None = None


def _rule_reasons(columns: Columns, agent: np.ndarray, reasons: list[list[_Reason]], ws: "Workspace",
                  reference: Experiment | None) -> None:
    if reference is None:
        return
    rules = load_overlay(reference.config_dir).rules
    evidence = {pid: len(p.evidence_sessions) for pid, p in proposals_by_rule(reference, ws).items()}
    chosen = first_rule(columns, rules)
    for index, rule in enumerate(rules):
        rows = np.flatnonzero((chosen == index) & (agent != rule.decision))
        n = evidence.get(rule.id, 0)
        priority = 0.3 + 0.6 * (3 / (3 + n))  # the fewer evidence sessions, the more a review teaches
        reason = _Reason(priority, f"rule:{rule.id}", "predicted-override",
                         f"rule {rule.id} ({n} evidence sessions) decides {rule.decision}", rule.decision)
        for row in rows.tolist():  # one reason shared by the rows (reasons are never changed)
            reasons[row].append(reason)


def _fold_reasons(columns: Columns, agent: np.ndarray, reasons: list[list[_Reason]], reference: Experiment | None) -> None:
    """Where the reference's fold models (each mined without one fold) disagree on the case."""
    runs = ((reference.manifest.mining.get("cv") or {}).get("fold_runs") or []) if reference else []
    if len(runs) < 2:
        return
    votes = []
    for run in runs:
        decided = agent.copy()
        taken = np.zeros(len(agent), dtype=bool)
        for rule in run.get("proposals", []):
            hit = ~taken & columns.mask(rule["when"])
            decided[hit] = rule["decision"]
            taken |= hit
        votes.append(decided)
    votes = np.array(votes, dtype=object)
    split_rows = np.flatnonzero((votes != votes[0]).any(axis=0))  # where the fold models do not all agree
    for row in split_rows.tolist():
        counts = Counter(votes[:, row])
        if len(counts) > 1:
            split = "–".join(str(n) for _, n in counts.most_common())
            top = counts.most_common(1)[0][0]
            share = 1 - counts[top] / len(runs)
            reasons[row].append(_Reason(0.5 + 0.5 * share, "folds:" + "|".join(sorted(counts)), "fold-disagreement",
                                        f"the {len(runs)} fold models split {split} "
                                        f"({', '.join(d for d, _ in counts.most_common())})", top))


def _candidate_reasons(columns: Columns, agent: np.ndarray, reasons: list[list[_Reason]], candidates) -> None:
    for precedent in candidates:
        rows = np.flatnonzero(columns.mask(precedent.condition) & (agent != precedent.decision))
        reason = _Reason(0.9, f"precedent:{precedent.name}", "candidate-precedent",
                         f"precedent {precedent.name} ({precedent.group_size} "
                         f"session{'s' if precedent.group_size != 1 else ''}, "
                         f"too few to propose) would decide {precedent.decision}", precedent.decision)
        for row in rows.tolist():
            reasons[row].append(reason)


def _boundary_reasons(columns: Columns, agent: np.ndarray, reasons: list[list[_Reason]],
                      conditions: Iterable[tuple[str, dict, str]]) -> None:
    """Cases near a learned threshold that the agent decides otherwise than the rule (or precedent)
    does: only there would the threshold lying elsewhere change a decision. Where the agent already
    decides as the rule, on either side, a review says nothing about where the line is."""
    seen = set()
    for name, condition, decision in conditions:
        for path, tests in condition.items():
            for op, bound in tests.items():
                if op not in ("lt", "le", "gt", "ge") or not isinstance(bound, (int, float)) \
                        or (path, bound, decision) in seen:
                    continue
                seen.add((path, bound, decision))
                with np.errstate(invalid="ignore"):
                    near = np.abs(columns.numbers(path) - bound) <= BOUNDARY * max(abs(bound), 1e-9)
                near &= agent != decision
                for row in np.flatnonzero(near):
                    value = columns.numbers(path)[row]
                    reasons[row].append(_Reason(0.5, f"boundary:{path}:{bound:g}", "boundary",
                                                f"{path} {value:g} is near the threshold {bound:g} of {name}"))


def _coverage_reasons(pending: list[Pending], reasons: list[list[_Reason]], reviewed, fields: list[str]) -> None:
    seen = {f: Counter(str(s.case.get(f)) for s in reviewed if s.case.get(f) is not None) for f in fields}
    labels = Counter(s.agent_decision for s in reviewed)
    made: dict[tuple, _Reason | None] = {}  # one reason (or none) per field value, shared by its rows

    def reason(field: str | None, value) -> _Reason | None:  # field None: the agent's decision
        key = (field, type(value), value)
        if key not in made:
            n = labels[value] if field is None else seen[field][str(value)]
            made[key] = None if n >= 3 else (
                _Reason(0.6, f"coverage:decision={value}", "coverage",
                        f"agent decision {value} has {n} review{'s' if n != 1 else ''}") if field is None else
                _Reason(0.4 + 0.4 / (1 + n), f"coverage:{field}={value}", "coverage",
                        f"{field} {value} has {n} review{'s' if n != 1 else ''}"))
        return made[key]

    for row, item in enumerate(pending):
        for field in fields:
            value = item.case.get(field)
            if value is None or isinstance(value, (dict, list)):
                continue
            found = reason(field, value)
            if found is not None:
                reasons[row].append(found)
        found = reason(None, item.decision)
        if found is not None:
            reasons[row].append(found)


def _hypothesis_tests(case: dict, columns: Columns) -> list[tuple[str, str, object]]:
    """The tests an override's own case satisfies: equal values, words of its text, the sides
    of the pending traffic's quantile cuts on each of its numbers."""
    tests: list[tuple[str, str, object]] = []
    for path, value in case.items():
        if isinstance(value, (str, bool)):
            tests += _value_tests(path, value)
        elif isinstance(value, (int, float)):
            numbers = columns.numbers(path)
            finite = numbers[np.isfinite(numbers)]
            if len(finite):
                cuts = sorted({round_cut(q) for q in np.quantile(finite, QUANTILES)})
                tests += [(path, "lt" if value < cut else "ge", cut) for cut in cuts]
    return tests


def _value_tests(path: str, value: str | bool) -> list[tuple[str, str, object]]:
    """A categorical value's test (equal to it), or a text's (each of its words)."""
    if isinstance(value, str) and " " in value.strip():
        return [(path, "contains", w) for w in sorted(words(value))]
    return [(path, "eq", value)]


def _word_index(columns: Columns, path: str) -> tuple[dict[str, list[int]], np.ndarray]:
    """For a text field: the distinct values each word is in, and each row's value code (a word
    of ``words`` is in a text exactly when the ``contains`` operator finds it there)."""
    distinct, codes = columns.factorised(path)
    found: dict[str, list[int]] = {}
    for index, value in enumerate(distinct):
        if isinstance(value, str):
            for word in words(value):
                found.setdefault(word, []).append(index)
    return found, codes


class _Hypotheses:
    """Hypotheses around reviewed cases, each one test or two on a case's own field values,
    found in the reviewed cases and in an evenly spaced sample of at most ``SEARCH_ROWS`` of
    the pending traffic (their test masks computed once and shared)."""

    def __init__(self, columns: Columns, agent: np.ndarray, reviewed) -> None:
        self.seen = Columns([s.case for s in reviewed])
        self.sample = np.unique(np.linspace(0, len(agent) - 1, min(len(agent), SEARCH_ROWS)).round().astype(int))
        if len(self.sample) < len(agent):
            columns, agent = Columns([columns.cases[i] for i in self.sample]), agent[self.sample]
        self.columns, self.agent = columns, agent
        self.masks: dict = {}
        self.indexes: dict = {}

    def mask(self, where: Columns, test) -> np.ndarray:
        key = (id(where), test)
        if key not in self.masks:
            path, op, value = test
            if op == "contains" and where.factorised(path) is not None:  # a word: one pass over the distinct texts
                if (id(where), path) not in self.indexes:
                    self.indexes[id(where), path] = _word_index(where, path)
                found, codes = self.indexes[id(where), path]
                hit = np.zeros(int(codes.max()) + 1 if len(codes) else 0, dtype=bool)
                hit[found.get(value, [])] = True
                self.masks[key] = hit[codes]
            else:
                self.masks[key] = where.test(*test)
        return self.masks[key]

    def rows(self, where: Columns, start: np.ndarray, hypothesis) -> np.ndarray:
        rows = start.copy()
        for test in hypothesis:
            rows &= self.mask(where, test)
        return rows

    def best(self, case: dict, decision: str, judged: np.ndarray, support: np.ndarray) -> list[tuple]:
        """The ``HYPOTHESES_PER_MISS`` hypotheses around ``case`` with pending cases the agent decides
        otherwise than ``decision``, by the share of the reviewed cases in them (those ``judged``)
        that ``support`` them, then by size: (score, text, hypothesis, support, reviewed there)."""
        tests = _hypothesis_tests(case, self.columns)
        open_rows = self.agent != decision  # traffic the agent decides otherwise
        found = []
        for hypothesis in [(a,) for a in tests] + [(a, b) for i, a in enumerate(tests) for b in tests[i + 1:]
                                                    if a[0] != b[0]]:
            size = int(self.rows(self.columns, open_rows, hypothesis).sum())
            if not size:
                continue
            inside = self.rows(self.seen, judged, hypothesis)
            backing, there = int((inside & support).sum()), int(inside.sum())
            text = " and ".join(f"{p} {op} {v:g}" if isinstance(v, float) else f"{p} {op} {v}" for p, op, v in hypothesis)
            found.append((-backing / (there + 1), -size, text, hypothesis, backing, there))
        return [(-score, text, hypothesis, backing, there)
                for score, _, text, hypothesis, backing, there in sorted(found, key=lambda f: f[:3])[:HYPOTHESES_PER_MISS]]

    def queue(self, reasons: list[list[_Reason]], hypothesis, decision: str, make) -> None:
        """Up to ``2 * MAX_PER_KEY`` pending cases of the hypothesis that the agent decides otherwise,
        evenly spaced, each given the reason ``make()`` builds (one reason shared by them)."""
        picks = np.flatnonzero(self.rows(self.columns, self.agent != decision, hypothesis))
        picks = picks[np.linspace(0, len(picks) - 1, min(len(picks), 2 * MAX_PER_KEY)).round().astype(int)]
        reason = make()
        for row in dict.fromkeys(self.sample[picks].tolist()):
            reasons[row].append(reason)


def _current(search: _Hypotheses, reviewed, rules) -> np.ndarray:
    """What the reference config decides on each reviewed case (its first matching rule, else the agent)."""
    chosen = first_rule(search.seen, rules)  # the reviewed cases as the search holds them (tests kept)
    return np.array([rules[i].decision if i >= 0 else s.agent_decision for i, s in zip(chosen, reviewed)], dtype=object)


def _miss_reasons(search: _Hypotheses, reasons: list[list[_Reason]], reviewed, rules) -> None:
    """Around each reviewed override the reference config still decides wrongly: the hypotheses
    (one test or two on its field values) with the most such overrides per reviewed case."""
    if not reviewed:
        return
    current = _current(search, reviewed, rules)
    human = np.array([s.human_decision for s in reviewed], dtype=object)
    misses = np.flatnonzero((human != current) & (human != np.array([s.agent_decision for s in reviewed], dtype=object)))
    if not len(misses):
        return
    misses = misses[np.linspace(0, len(misses) - 1, min(len(misses), MAX_MISSES)).round().astype(int)]
    for miss in dict.fromkeys(misses.tolist()):
        decision = human[miss]
        for score, text, hypothesis, support, inside in search.best(reviewed[miss].case, decision, current != decision,
                                                                    human == decision):
            search.queue(reasons, hypothesis, decision, lambda: _Reason(
                0.3 + 0.6 * score, f"hypothesis:{decision}:{text}", "unexplained-override",
                f"{text}: {support} of {inside} reviewed cases there were overridden to {decision}, "
                "unexplained by the config", decision))


def _precedent_reasons(search: _Hypotheses, reasons: list[list[_Reason]], reviewed, learned: set[str]) -> None:
    """Around the reviews tagged with a precedent that reviewers named only where they agreed
    with the agent, and no rule of the reference has learned: mining sees no override of it, so
    nothing else looks for its cases the agent decides otherwise (a precedent with a tagged
    override is mined: a rule, a candidate precedent or an unexplained override looks for it).
    The hypotheses with the most reviews tagged with it per reviewed case are queued where the
    agent decides otherwise than its reviews' most common decision; up to ``PRECEDENT_SEEDS`` of
    its tagged reviews, evenly spaced, are looked around."""
    tagged: dict[str, list[int]] = {}
    for index, session in enumerate(reviewed):
        if session.precedent and session.precedent not in learned:
            tagged.setdefault(session.precedent, []).append(index)
    human = np.array([s.human_decision for s in reviewed], dtype=object)
    agreed = human == np.array([s.agent_decision for s in reviewed], dtype=object)
    tagged = {name: rows for name, rows in tagged.items() if agreed[rows].all()}
    if not tagged:
        return
    names = np.array([s.precedent for s in reviewed], dtype=object)
    everyone = np.ones(len(reviewed), dtype=bool)
    for name in sorted(tagged):
        rows = tagged[name]
        decision = Counter(human[rows].tolist()).most_common(1)[0][0]
        queued = set()
        for seed in dict.fromkeys(np.linspace(0, len(rows) - 1, min(len(rows), PRECEDENT_SEEDS)).round().astype(int).tolist()):
            for score, text, hypothesis, support, inside in search.best(reviewed[rows[seed]].case, decision, everyone,
                                                                        names == name):
                if text in queued:
                    continue
                queued.add(text)
                search.queue(reasons, hypothesis, decision, lambda: _Reason(
                    0.3 + 0.6 * score, f"precedent-hypothesis:{name}:{text}", "unlearned-precedent",
                    f"{text}: {support} of {inside} reviewed cases there were tagged {name}, which no rule has "
                    f"learned yet; would the reviewer decide {decision} here too?", decision))


def _tokens(case: dict) -> set[tuple[str, str, object]]:
    """A case's categorical values and the words of its texts, as the tests they satisfy."""
    return {t for path, value in case.items() if isinstance(value, (str, bool)) for t in _value_tests(path, value)}


def _unconfirmed_reasons(search: _Hypotheses, reasons: list[list[_Reason]], reviewed, rules) -> None:
    """Inside each rule: the part of what it changes that no reviewed case it decides resembles.
    A value or word held by at least ``UNCONFIRMED_SHARE`` of the pending cases a rule decides
    otherwise than the agent (and by three or more), and by none of the reviewed cases it
    decides, marks cases no reviewer has confirmed the rule on (an exception may live there,
    e.g. a named deliverable inside "this vendor's quotes are rejected"); the cases holding
    the most such values are queued."""
    if not rules:
        return
    chosen = first_rule(search.columns, rules)
    decided = first_rule(search.seen, rules) if reviewed else np.array([], dtype=int)
    for index, rule in enumerate(rules):
        rows = np.flatnonzero((chosen == index) & (search.agent != rule.decision)).tolist()
        if len(rows) < 3:
            continue
        seen = set().union(*(_tokens(reviewed[i].case) for i in np.flatnonzero(decided == index).tolist()))
        tokens = {row: _tokens(search.columns.cases[row]) - seen for row in rows}
        counts = Counter(t for found in tokens.values() for t in found)
        novel = {t for t, n in counts.items() if n >= max(3, UNCONFIRMED_SHARE * len(rows))}
        held = sorted(((len(found & novel), row) for row, found in tokens.items() if found & novel), key=lambda f: -f[0])
        if not held:
            continue
        shown = ", ".join(f"{path} {value}" for path, _, value in sorted(novel, key=lambda t: (-counts[t], t[0], str(t[2])))[:3])
        reason = _Reason(UNCONFIRMED_PRIORITY, f"unconfirmed:{rule.id}", "unconfirmed-rule",
                         f"rule {rule.id} decides {rule.decision} here, but none of the reviewed cases it decides "
                         f"holds {shown}", rule.decision)
        for _, row in held[:2 * MAX_PER_KEY]:
            reasons[int(search.sample[row])].append(reason)


def _edge_reasons(columns: Columns, agent: np.ndarray, reasons: list[list[_Reason]], reviewed, rules) -> None:
    """Just outside each learned rule: cases meeting all its tests but one, which the agent decides
    otherwise. For a numeric test, only those between the rule's threshold and the nearest reviewed
    case outside it that kept the agent's decision (where the reviewer's own line lies is not known
    yet), evenly spaced over that gap: each review halves it. For another test, only when the rule
    has more: is that test needed at all?"""
    seen = Columns([s.case for s in reviewed]) if reviewed else None
    human = np.array([s.human_decision for s in reviewed], dtype=object)
    kept = human == np.array([s.agent_decision for s in reviewed], dtype=object)
    for rule in rules:
        tests = [(path, op, value) for path, checks in rule.when.items() for op, value in checks.items()]
        for i, (path, op, value) in enumerate(tests):
            numeric = op in ("lt", "le", "gt", "ge") and isinstance(value, (int, float)) and not isinstance(value, bool)
            if not numeric and (len(tests) < 2 or not EDGE_TESTS):
                continue
            others = [t for j, t in enumerate(tests) if j != i]
            rows = (agent != rule.decision) & ~columns.test(path, op, value)
            for test in others:
                rows &= columns.test(*test)
            if numeric:
                numbers = columns.numbers(path)
                rows &= np.isfinite(numbers)
                below = op in ("lt", "le")  # the rule holds below the threshold: the gap is above it
                limit = np.inf if below else -np.inf
                if seen is not None:
                    outside = kept & (human != rule.decision) & ~seen.test(path, op, value)
                    for test in others:
                        outside &= seen.test(*test)
                    known = seen.numbers(path)[outside]
                    known = known[np.isfinite(known)]
                    if len(known):
                        limit = known.min() if below else known.max()
                with np.errstate(invalid="ignore"):
                    rows &= (numbers < limit) if below else (numbers > limit)
                found = np.flatnonzero(rows)
                found = found[np.argsort(numbers[found], kind="stable")]
                gap = f"between it and {limit:g}, the nearest reviewed case kept as the agent decided" if np.isfinite(limit) \
                    else "where no reviewed case outside it kept the agent's decision"
                text, priority = f"{path} is outside rule {rule.id}'s {op} {value:g}, {gap}", EDGE_PRIORITY
            else:
                found = np.flatnonzero(rows)
                text, priority = f"meets rule {rule.id} but for {path} {op} {value}: is that test needed?", 0.45
            if not len(found):
                continue
            found = found[np.unique(np.linspace(0, len(found) - 1, min(len(found), 2 * MAX_PER_KEY)).round().astype(int))]
            reason = _Reason(priority, f"edge:{rule.id}:{path}:{op}", "rule-edge", text, rule.decision)
            for row in found.tolist():
                reasons[row].append(reason)


def _greedy(reasons: list[list[_Reason]], limit: int) -> list[tuple[int, _Reason, float]]:
    """Up to ``limit`` rows by priority, each further pick for the same key decayed by ``DECAY``,
    none once a key has ``MAX_PER_KEY`` picks or a kind of reason ``MAX_REASON_SHARE`` of
    ``limit`` (a row left without a reason is not picked)."""
    used: Counter = Counter()
    kinds: Counter = Counter()
    per_kind = max(MAX_PER_KEY, int(MAX_REASON_SHARE * limit))

    def best(row: int) -> tuple[float, _Reason | None]:
        return max(((r.priority * DECAY ** used[r.key], r) for r in reasons[row]
                    if used[r.key] < MAX_PER_KEY and kinds[r.picked_by] < per_kind),
                   key=lambda pair: pair[0], default=(0.0, None))

    heap = [(-max(r.priority for r in rs), row) for row, rs in enumerate(reasons) if rs]  # nothing used yet
    heapq.heapify(heap)
    picked = []
    while heap and len(picked) < limit:
        stale, row = heapq.heappop(heap)
        priority, reason = best(row)
        if reason is None:
            continue
        if priority < -stale - 1e-12:  # its key was used since it was pushed
            heapq.heappush(heap, (-priority, row))
            continue
        picked.append((row, reason, priority))
        used[reason.key] += 1
        kinds[reason.picked_by] += 1
    return picked


def build_queue(ws: "Workspace", n: int = 50, random_share: float = RANDOM_SHARE, seed: int = 0,
                since: str | None = None, batch: str = "q0001", candidates=None) -> Queue:
    """Rank the unreviewed decisions and pick ``n``: ranked picks first, then the random share.

    The cyclic garbage collector is paused meanwhile: ranking makes an object or more per
    pending decision and no cycles, and at 100k decisions its passes over them cost seconds."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_queue(ws, n, random_share, seed, since, batch, candidates)
    finally:
        if was_enabled:
            gc.enable()


def _build_queue(ws: "Workspace", n: int, random_share: float, seed: int, since: str | None, batch: str,
                 candidates) -> Queue:
    with ws.store() as store:
        pending = pending_decisions(store.db, since)
        already = set(recorded_picks(store.db))
    pending = [p for p in pending if p.session_id not in already]  # picked before, review still awaited
    reference = reference_experiment(ws)
    reasons: list[list[_Reason]] = [[] for _ in pending]
    if pending and random_share < 1:
        columns = Columns([p.case for p in pending])
        agent = np.array([p.decision for p in pending], dtype=object)
        _rule_reasons(columns, agent, reasons, ws, reference)
        _fold_reasons(columns, agent, reasons, reference)
        if candidates is None:
            candidates = candidate_precedents(ws)
        _candidate_reasons(columns, agent, reasons, candidates)
        rules = load_overlay(reference.config_dir).rules if reference else ()
        _boundary_reasons(columns, agent, reasons, [(f"rule {r.id}", r.when, r.decision) for r in rules]
                          + [(f"precedent {p.name}", p.condition, p.decision) for p in candidates])
        _coverage_reasons(pending, reasons, ws.sessions, ws.project.config.entity_fields)
        search = _Hypotheses(columns, agent, ws.sessions)  # one search, its masks shared by the reasons below
        _miss_reasons(search, reasons, ws.sessions, rules)
        _precedent_reasons(search, reasons, ws.sessions, learned_precedents(reference, ws))
        _unconfirmed_reasons(search, reasons, ws.sessions, rules)
        _edge_reasons(columns, agent, reasons, ws.sessions, rules)
    randoms = min(len(pending), round(n * random_share))
    ranked = _greedy(reasons, min(n, len(pending)) - randoms)
    picks = [Pick(pending[row].session_id, pending[row].decision, reason.picked_by, reason.text, round(priority, 4), 1.0,
                  reason.predicted) for row, reason, priority in ranked]
    taken = {row for row, _, _ in ranked}
    rest = [row for row in range(len(pending)) if row not in taken]
    draws = min(len(rest), min(n, len(pending)) - len(picks))
    config = ws.project.config
    chosen = []
    if draws > 0:  # the sort keys of every pending decision: only when the batch has random slots
        spread = spread_ranks(spread_columns([pending[row] for row in rest], config.entity_fields, list(config.bands)[:1]))
        chosen = [rest[i] for i in balanced_sample(spread, draws, random.Random(f"{seed}/{batch}"))]
    probability = draws / len(rest) if rest else 0.0
    picks += [Pick(pending[row].session_id, pending[row].decision, "random", "random share (equal chances, balanced)", 0.0,
                   round(probability, 8)) for row in sorted(chosen)]
    model = [{"id": r.id, "decision": r.decision, "when": r.when}
             for r in (load_overlay(reference.config_dir).rules if reference else ())]
    return Queue(batch, reference.id if reference else None, len(pending), picks, random_share, model)


def balanced_sample(ranks: list[np.ndarray], draws: int, rng: random.Random) -> list[int]:
    """``draws`` of the positions ``ranks`` sort (one array per sort key, most significant first:
    ``spread_ranks``), each with the same chance (draws / positions), spread evenly over the keys:
    systematic sampling from the positions sorted by key, ties in a random order, with a random
    start. That is stratified sampling over the keys' values without strata to choose: each run
    of equal keys gets its share of the draws, give or take one."""
    size = len(ranks[0]) if ranks else 0
    if draws <= 0 or not size:
        return []
    order = list(range(size))
    rng.shuffle(order)
    place = np.empty(size, dtype=np.int64)
    place[order] = np.arange(size)  # each position's place in the random order: the ties' order
    by_key = np.lexsort([place, *reversed(ranks)])
    step = size / draws
    start = rng.random() * step
    return [int(by_key[min(int(start + j * step), size - 1)]) for j in range(draws)]


def spread_ranks(columns: Iterable[list]) -> list[np.ndarray]:
    """Each column of values as ranks, in the order a balanced draw spreads over: numbers by value
    first, then any other value by its text (a missing one as empty text)."""
    def part(value) -> tuple:
        if type(value) in (int, float):
            return (0, value, "")
        return (1, 0, "" if value is MISSING or value is None else str(value))
    ranks = []
    for values in columns:
        parts = [part(v) for v in values]
        rank = {key: i for i, key in enumerate(sorted(set(parts)))}
        ranks.append(np.fromiter(map(rank.__getitem__, parts), dtype=np.int64, count=len(parts)))
    return ranks


def spread_columns(pending: list[Pending], entity_fields: list[str], numbers: list[str]) -> list[list]:
    """What a balanced draw spreads over: the agent's decision, the entity fields, then a number."""
    cases = [p.case for p in pending]
    return [[p.decision for p in pending], *(column_values(cases, f) for f in (*entity_fields, *numbers))]


def candidate_precedents(ws: "Workspace") -> list:
    """Precedents the last mining found but could not propose yet, each with a condition to look for.

    A weak precedent without a condition (too few sessions to induce one) is looked for by
    the entity values all its sessions share, e.g. the one vendor its two sessions name."""
    if not ws.sessions:
        return []
    by_id = {s.session_id: s for s in ws.sessions}
    found = []
    for precedent in ws.mine(ws.baseline()).precedents:
        if precedent.condition and not precedent.weak and precedent.expected_gain > 0:
            continue  # proposable: the reference config's rules speak for it
        condition = precedent.condition or shared_entities(
            [by_id[i].case for i in precedent.evidence_sessions if i in by_id], ws.project.config.entity_fields)
        if condition:
            found.append(precedent.model_copy(update={"condition": condition}))
    return found


def shared_entities(cases: list[dict], fields: list[str]) -> dict:
    """``{field: {eq: value}}`` for each entity field on which every case has the same value."""
    condition = {}
    for field in fields:
        values = {str(case.get(field)) for case in cases}
        if cases and len(values) == 1 and cases[0].get(field) is not None:
            condition[field] = {"eq": cases[0][field]}
    return condition


# --- honest agreement from chosen reviews ----------------------------------------------
def sampled_agreement(sessions, decisions: dict[str, str], picks: dict[str, dict]) -> dict | None:
    """Agreement on queue-picked reviews: the random share, unweighted, and an estimate for all traffic.

    Batch by batch, the traffic the batch saw is what earlier batches picked (known once
    reviewed) plus its pool; its ranked picks (probability 1) stand for themselves and its
    random picks, an equal-chance sample of the rest of the pool, for that rest. Each batch
    with random picks so gives an unbiased estimate; the weighted figure is their mean,
    weighted by random picks, with a 95% interval. A pick still awaiting its review counts
    as its batch's random share. Reviews the queue did not pick are left out, and counted."""
    reviewed = {s.session_id: int(decisions.get(s.session_id) == s.human_decision) for s in sessions}
    picked = [sid for sid in picks if sid in reviewed]
    if not picked:
        return None
    batches: dict[str, list[str]] = {}
    for sid, pick in picks.items():
        batches.setdefault(pick["batch"], []).append(sid)
    earlier: list[str] = []
    estimates = []  # (random picks, estimate, variance)
    for batch in sorted(batches):
        members = batches[batch]
        randoms = [reviewed[s] for s in members if picks[s]["picked_by"] == "random" and s in reviewed]
        if randoms:
            share = sum(randoms) / len(randoms)
            ranked = [s for s in members if picks[s]["picked_by"] != "random"]
            known = sum(reviewed.get(s, share) for s in earlier + ranked)
            pool = picks[members[0]]["pool"]
            rest = max(pool - len(ranked), 0)
            total = len(earlier) + pool
            estimates.append((len(randoms), (known + rest * share) / total,
                              (rest / total) ** 2 * share * (1 - share) / len(randoms)))
        earlier += members
    weighted = interval = None
    if estimates:
        count = sum(n for n, _, _ in estimates)
        weighted = sum(n * e for n, e, _ in estimates) / count
        half = 1.96 * sum((n / count) ** 2 * v for n, _, v in estimates) ** 0.5
        interval = [round(max(weighted - half, 0.0), 4), round(min(weighted + half, 1.0), 4)]
        weighted = round(weighted, 4)
    randoms = [reviewed[s] for s in picked if picks[s]["picked_by"] == "random"]
    return {
        "hajek": hajek(reviewed, picks, batches),
        "random": {"sessions": len(randoms), "agreement": round(sum(randoms) / len(randoms), 4) if randoms else None},
        "unweighted": {"sessions": len(picked), "agreement": round(sum(reviewed[s] for s in picked) / len(picked), 4)},
        "weighted": {"sessions": len(picked), "batches": len(estimates), "agreement": weighted, "interval95": interval},
        "not_from_queue": len(reviewed) - len(picked),
    }


def hajek(reviewed: dict[str, int], picks: dict[str, dict], batches: dict[str, list[str]]) -> dict:
    """The self-normalised (Hájek) estimate over all queue-picked reviews at once: a ranked pick
    weighs 1, a random pick 1 / the chance a never-ranked session had of being drawn in any
    batch so far (1 - the product over batches of 1 - draws/remaining); the weighted mean."""
    missed = 1.0
    for members in batches.values():
        draws = sum(picks[s]["picked_by"] == "random" for s in members)
        rest = picks[members[0]]["pool"] - (len(members) - draws)
        if draws and rest > 0:
            missed *= 1 - min(draws / rest, 1.0)
    weight = 1 / (1 - missed) if missed < 1 else 1.0
    rows = [(1.0 if picks[s]["picked_by"] != "random" else weight, y) for s, y in reviewed.items() if s in picks]
    total = sum(w for w, _ in rows)
    return {"sessions": len(rows), "random_weight": round(weight, 2),
            "agreement": round(sum(w * y for w, y in rows) / total, 4) if total else None}


# --- model-assisted: predictions for all traffic, corrected by the random picks ----------
def with_rules(columns: Columns, agent: np.ndarray, rules) -> np.ndarray:
    """Each row's decision once learned rules are laid over the agent's (first matching rule wins)."""
    decided = agent.copy()
    chosen = first_rule(columns, rules)
    hit = np.flatnonzero(chosen >= 0)
    decided[hit] = np.array([rules[i].decision for i in chosen[hit]], dtype=object)
    return decided


def model_assisted(ws: "Workspace", experiment: Experiment, reference: Experiment | None = None) -> dict | None:
    """The experiment's agreement over all traffic, model-assisted (a difference estimator).

    Each batch's model is the one the queue had when it drew the batch: the reference
    config's rules recorded with the batch (``record``), laid over the agent's decision,
    stand for the humans; the experiment's own rules (none for the baseline) for it. A
    model made before the draw cannot have learned from the batch's random picks, nor from
    the picks the queue chased after reviewing them (a later model does both: the fold
    configs of today's reference predicted the random picks of earlier batches too well and
    drove the estimate off by 1 to 2 points on bench/active.py). ``difference_estimate``
    corrects each batch's predictions with its random picks' errors. A batch recorded without
    a model (the first, before any rules, or recorded by an older improver) gives its plain
    weighted figure. ``reference`` is unused (kept for callers). None without recorded picks."""
    with ws.store() as store:
        picks = recorded_picks(store.db)
        models = recorded_models(store.db)
        rows = store.db.execute("SELECT session_id, case_json, decision FROM decisions ORDER BY session_id").fetchall()
    if not picks or not rows:
        return None
    ids = [r[0] for r in rows]
    columns = Columns([_loads(r[1]) for r in rows])
    agent = np.array([r[2] for r in rows], dtype=object)
    own = with_rules(columns, agent, load_overlay(experiment.config_dir).rules)
    batches = {pick["batch"] for pick in picks.values()}
    predicted = {}
    made: dict[str, dict[str, int]] = {}  # batches with the same rules share their predictions
    for batch in sorted(batches):
        if batch not in models:
            continue
        key = models[batch][1]
        if key not in made:
            rules = parse_rules({"rules": yaml.safe_load(key)}, "queue model")
            made[key] = dict(zip(ids, (own == with_rules(columns, agent, rules)).astype(int).tolist()))
        predicted[batch] = made[key]
    decisions = {k: v["decision"] for k, v in ws.run(experiment).items()}
    out = difference_estimate(ws.sessions, decisions, picks, predicted)
    named = sorted({models[b][0] or "?" for b in predicted})
    model = (f"the reference the queue had when it drew each batch ({', '.join(named)})" if predicted
             else "none (the agent): the weighted figure")
    return out and {**out, "model": model}


MIN_SLOPE_PAIRS = 10  # reviewed random picks a slope is fitted on, at least (fewer: the slope is 0)


def fitted_slope(pairs: list[tuple[int, int]]) -> float:
    """Least-squares slope of agreement on prediction, clipped to 0..1; 0 (a model without a
    record counts for nothing) with fewer than ``MIN_SLOPE_PAIRS`` pairs or predictions that do
    not vary over them (they say nothing of how the model does where it predicts otherwise)."""
    if len(pairs) < MIN_SLOPE_PAIRS or len({p for _, p in pairs}) < 2:
        return 0.0
    a = np.array(pairs, dtype=float)
    return float(np.clip(np.cov(a.T)[0, 1] / np.var(a[:, 1], ddof=1), 0.0, 1.0))


def _pooled_variance(batches: list[list[float]]) -> float:
    """The variance of one random pick's error, pooled within batches (each batch has its own model and
    mean error) over batches of one kind, with one pseudo-pick of the largest variance a 0/1 outcome
    has (0.25): a few picks that all came out alike do not make a batch count for everything."""
    squares = sum(float(np.sum((np.array(errors) - np.mean(errors)) ** 2)) for errors in batches if errors)
    degrees = sum(len(errors) - 1 for errors in batches if errors)
    return (squares + 0.25) / (degrees + 1)


def difference_estimate(sessions, decisions: dict[str, str], picks: dict[str, dict],
                        predicted: dict[str, dict[str, int]]) -> dict | None:
    """Batch by batch as ``sampled_agreement``'s weighted figure, but the rest of a batch's pool
    is its predicted agreement plus the random picks' mean error of prediction:
    ``(known earlier + agree_ranked + rest × (slope × mean predicted over the rest + mean(agree −
    slope × predicted) over the random picks)) / (earlier + pool)``. ``predicted`` holds, per
    batch, a 0/1 prediction for every stored decision, made before the batch was drawn (a batch
    without one gives its plain weighted figure). Unbiased whatever the model, because neither
    the predictions nor the slope depend on the batch's random draw: the slope (of agreement on
    prediction, clipped to 0..1) is fitted on the random picks of earlier batches against their
    own batches' predictions. Only while there are fewer than ``MIN_SLOPE_PAIRS`` of those is it
    fitted on the batch's own random picks (a regression estimator: its ratio bias is small at
    that many), and it is 0 when those are fewer too: a model without a record on random picks
    counts for nothing yet, and the batch gives its plain weighted figure (five random picks
    fitting the slope they are then corrected with made a biased ratio estimator; a slope of 1
    let a weak first model add its whole error variance). Its variance is that of the errors, small when the
    models are good, where the plain weighted figure's is that of agreement itself; a useless
    model's slope goes to 0 and gives the weighted figure back. The rest of a pool is taken to be
    the decisions not picked before, not ranked in the batch and not reviewed outside the queue.

    The batches' estimates are combined by inverse variance: each weighs its random picks over the
    variance of one pick's error, pooled over the batches of its kind (corrected by a model, or
    plain; with one kind only, by random picks, as the weighted figure). Pooled, so no batch's
    weight follows its own draw's luck; by kind, so five picks a good model corrects can outweigh
    the plain first batch's fifty, and that batch's luck fades from the figure as corrected
    batches come (weighted by random picks it stayed in: on moderation seeds 11–20, 5.9 points
    off at 50 reviews and still 2.4 at 400)."""
    reviewed = {s.session_id: int(decisions.get(s.session_id) == s.human_decision) for s in sessions}
    batches: dict[str, list[str]] = {}
    for sid, pick in picks.items():
        batches.setdefault(pick["batch"], []).append(sid)
    order = {batch: i for i, batch in enumerate(sorted(batches))}
    ids = sorted({s for model in predicted.values() for s in model} | set(picks))
    picked_in = np.array([order[picks[s]["batch"]] if s in picks else len(order) for s in ids])
    drawn = np.array([s in picks and picks[s]["picked_by"] == "random" for s in ids])
    outside = np.array([s in reviewed and s not in picks for s in ids])
    at = {s: i for i, s in enumerate(ids)}
    earlier: list[str] = []
    pairs: list[tuple[int, int]] = []  # (agree, predicted) of earlier batches' reviewed random picks
    estimates = []  # (random picks' errors, estimate, (rest / total)², corrected by a model)
    slope = 1.0
    for batch in sorted(batches):
        members = batches[batch]
        randoms = [s for s in members if picks[s]["picked_by"] == "random" and s in reviewed]
        model = predicted.get(batch)
        if model is None:
            slope, values = 0.0, np.zeros(len(ids))
        else:
            own = [(reviewed[s], model.get(s, 1)) for s in randoms]
            slope = fitted_slope(pairs if len(pairs) >= MIN_SLOPE_PAIRS else own)
            values = slope * np.array([model.get(s, 1) for s in ids], dtype=float)
        if randoms:
            errors = [reviewed[s] - values[at[s]] for s in randoms]
            error = sum(errors) / len(errors)
            ranked = [s for s in members if picks[s]["picked_by"] != "random"]
            known = sum(reviewed[s] if s in reviewed else values[at[s]] + error for s in earlier + ranked)
            b = order[batch]
            rest_rows = ~outside & ((picked_in > b) | ((picked_in == b) & drawn))
            rest_mean = float(values[rest_rows].mean()) if rest_rows.any() else 0.0
            pool = picks[members[0]]["pool"]
            rest = max(pool - len(ranked), 0)
            total = len(earlier) + pool
            estimates.append((errors, (known + rest * (rest_mean + error)) / total, (rest / total) ** 2, slope > 0))
            if model is not None:
                pairs += [(reviewed[s], model.get(s, 1)) for s in randoms]
        earlier += members
    if not estimates:
        return None
    count = sum(len(errors) for errors, _, _, _ in estimates)
    spread = {kind: _pooled_variance([e for e, _, _, m in estimates if m == kind]) for kind in (False, True)}
    weights = [len(errors) / spread[modelled] for errors, _, _, modelled in estimates]
    weight = sum(weights)
    value = min(max(sum(w * e for w, (_, e, _, _) in zip(weights, estimates)) / weight, 0.0), 1.0)
    half = 1.96 * sum((w / weight) ** 2 * factor * spread[m] / len(errors)
                      for w, (errors, _, factor, m) in zip(weights, estimates)) ** 0.5
    last = predicted.get(max(batches)) if batches else None
    return {"agreement": round(value, 4), "batches": len(estimates), "random_sessions": count,
            "interval95": [round(max(value - half, 0.0), 4), round(min(value + half, 1.0), 4)],
            "models": len(predicted), "slope": round(slope, 4),
            "predicted_agreement": round(float(np.mean(list(last.values()))), 4) if last else None}
