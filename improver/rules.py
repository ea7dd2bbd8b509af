"""Rule induction: the compact condition that explains a group of human decisions.

A beam search over conjunctions of feature tests (at most ``max_tests``). Counts come
from packed bitsets, all candidate extensions of a beam entry at once. A rule is
judged on the group it explains: ``sqrt(h) * (h / (h + c) - base)`` where ``h`` is the
group's sessions it covers and ``c`` the covered sessions whose human decision
contradicts it; other sessions with the same decision are neutral, so a precedent is
not explained by a broad condition that merely shares its decision. A rule must cover
at least ``min_support`` of the group and explain more of it than it contradicts
(``h >= c``). Its precision over everything it covers, shrunk toward the parent's
agreement (a beta prior of ``PRIOR_STRENGTH`` sessions at the rate the current agent
already agrees with the reviewers), must clear ``min_precision``, and its Wilson lower
bound ``min_wilson``, so three lucky rows do not make a rule. A test that refines a rule
must take at least ``MIN_REMOVED`` contradicting sessions out of it (one is a noisy
review, not a condition), and set tests (``in``) only refine: alone, a pair of values
fits noise at small N. Redundant tests are pruned. Of rules equally good on the counts, the
one whose text tests the reviewers' notes name wins ("names the deliverable": ``contains
deliverable``, not another word the same two requests share), and a rule is narrowed by a
test the notes name that keeps every row it explains ("campaign" by the departments they name).
A found rule's thresholds move off the quantile cuts the search tries to the roundest number
between the nearest rows on either side (the same rows match; declared band cuts stay put).
A ``band`` test (``lo <= x < hi``; mining makes them where a group's values fall in separate
runs) is one test where two thresholds would be two, so the search finds a band beside another
test in two steps, not three.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Sequence

import numpy as np

from improver.features import Test, TestCounts, count, pack, roundest_between, roundest_near, unpack

OCCAM_MARGIN = 0.1  # a rule's extra test must raise its quality by 10%
HINT_TOLERANCE = 0.8  # a rule starting from the entity a precedent is named after may be 20% worse
MIN_REMOVED = 2  # a test added to a rule must remove at least this many contradicting rows (one is noise)
REFINE_ONLY = ("in",)  # operators never a rule's first test
PRIOR_STRENGTH = 2.0  # sessions' worth of the parent's agreement a rule's precision is shrunk toward


@dataclass(frozen=True)
class InducedRule:
    tests: tuple[Test, ...]
    bits: np.ndarray
    covered: int
    positives: int
    correct: int
    quality: float

    @property
    def precision(self) -> float:
        return self.correct / self.covered if self.covered else 0.0

    def condition(self) -> dict[str, dict]:
        """The rule's condition in the ``{field: {op: value}}`` language of learned rules (a band test
        is its two cuts, ``ge`` and ``lt``)."""
        when: dict[str, dict] = {}
        for test in sorted(self.tests, key=lambda t: (t.field, t.op)):
            checks = when.setdefault(test.field, {})
            if test.op == "band":
                checks.update(ge=test.value[0], lt=test.value[1])
            else:
                checks[test.op] = test.value
        return when


class _Within:
    """``matrix & within`` row by row, each row made only when indexed (a search keeps a few of them)."""

    def __init__(self, matrix: np.ndarray, within: np.ndarray):
        self.matrix, self.within = matrix, within

    def __getitem__(self, i) -> np.ndarray:
        return self.matrix[i] & self.within


@lru_cache(maxsize=65536)
def _words(text: str) -> frozenset[str]:
    """A text's lower-case words and numbers (the whole-word units of ``contains``; cached: notes repeat)."""
    return frozenset(re.findall(r"[a-z0-9]+", text.lower()))


def wilson_lower(successes: int, trials: int, z: float = 1.0) -> float:
    if trials == 0:
        return 0.0
    p = successes / trials
    centre = p + z * z / (2 * trials)
    margin = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return (centre - margin) / (1 + z * z / trials)


class RuleInducer:
    """Finds rules over one fixed set of rows and tests; reused across groups."""

    def __init__(self, tests: list[Test], rows: int, beam_width: int = 12, max_tests: int = 3,
                 min_precision: float = 0.65, min_wilson: float = 0.5, preferred_fields: tuple[str, ...] = (),
                 prior: float = 0.5, numbers: dict[str, np.ndarray] | None = None,
                 fixed_cuts: dict[str, Sequence[float]] | None = None):
        self.tests = tests
        # numeric fields' values, row by row, to place thresholds (``_placed``); the declared cuts stay put
        self.numbers = numbers or {}
        self.fixed_cuts = {field: set(cuts) for field, cuts in (fixed_cuts or {}).items()}
        self.preferred_fields = set(preferred_fields)
        self.rows = rows
        self.matrix = np.stack([t.bits for t in tests]) if tests else np.zeros((0, (rows + 63) // 64), np.uint64)
        self.counts = TestCounts(self.matrix, rows)
        # set tests ("urgency in [urgent, emergency]") only refine a rule: alone they fit noise at small N
        self.refine_only = np.array([t.op in REFINE_ONLY for t in tests], dtype=bool)
        self.beam_width = beam_width
        self.max_tests = max_tests
        self.min_precision = min_precision
        self.min_wilson = min_wilson
        self.prior = prior  # the parent's agreement rate: where a rule's precision starts before evidence
        self._note_words: set[str] = set()

    def _counts(self, within: np.ndarray, positives: np.ndarray, correct: np.ndarray):
        """Each test's rows within ``within`` (``rows[i]``, a bitset made when asked for), and how many
        of them there are, are positives and are correct."""
        rows = _Within(self.matrix, within)
        return rows, self.counts(within), self.counts(within & positives), self.counts(within & correct)

    @staticmethod
    def _quality(hit: np.ndarray, contradicting: np.ndarray, base_rate: float) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            purity = np.where(hit + contradicting > 0, hit / (hit + contradicting), 0.0)
        return np.sqrt(hit) * (purity - base_rate)

    def _plainness(self, chosen: tuple[int, ...]) -> tuple[int, int, int]:
        """Tie-breaker: tests on text values the group's reviewer notes name (more is plainer), then
        keyword tests, then tests off the declared entity fields (fewer is plainer)."""
        tests = [self.tests[i] for i in chosen]
        return (-sum(self.named(t) for t in tests), sum(t.op == "contains" for t in tests),
                sum(t.field not in self.preferred_fields for t in tests))

    def named(self, test: Test) -> bool:
        """Whether the reviewer notes being explained name the test's text value (every word of it;
        each value of a set test): a note saying "names the deliverable" names ``contains deliverable``."""
        values = test.value if isinstance(test.value, list) else [test.value]
        return bool(self._note_words) and all(isinstance(v, str) and _words(v) <= self._note_words for v in values)

    def _valid(self, positives: int, covered: int, correct: int, min_support: int) -> bool:
        shrunk = (correct + PRIOR_STRENGTH * self.prior) / (covered + PRIOR_STRENGTH)
        return (positives >= min_support and covered > 0 and positives >= covered - correct
                and shrunk >= self.min_precision and wilson_lower(correct, covered) >= self.min_wilson)

    def induce(self, positives: np.ndarray, correct: np.ndarray, min_support: int,
               within: np.ndarray | None = None, hint: str = "", notes: Sequence[str] = ()) -> InducedRule | None:
        """The best valid rule for ``positives`` (rows to explain) given ``correct``
        (every row whose human decision is the rule's decision), counted only over the
        rows in ``within`` (rows no earlier rule of a decision list has decided), or None.

        ``hint`` is the precedent's name: reviewers name precedents after what they are
        about, so a rule that starts from an entity named in it is kept when it is
        nearly as good as the best rule found without that start. ``notes`` are the
        reviewers' notes on the rows to explain: of rules equally good on the counts, the
        one whose tests name more text values the notes name wins (the keyword the
        reviewer gave as her reason, not another word the same few requests share), and a
        test the notes name that keeps all the rule explains narrows it (``_narrowed``)."""
        self._note_words = set().union(*map(_words, set(notes)))
        universe = within if within is not None else pack(np.ones(self.rows, dtype=bool))
        positives, correct = positives & universe, correct & universe
        if not self.tests or count(positives) < min_support:
            return None
        free = self._search(positives, correct, min_support, universe, ())
        starts = self._named_in(hint)
        if starts:
            named = self._search(positives, correct, min_support, universe, starts)
            if named is not None and (free is None or named.quality >= HINT_TOLERANCE * free.quality):
                return self._placed(self._narrowed(named, positives, correct, universe), universe)
        return self._placed(self._narrowed(free, positives, correct, universe), universe)

    def _placed(self, rule: InducedRule | None, universe: np.ndarray) -> InducedRule | None:
        """The rule with each threshold moved to the roundest number between the nearest rows on either
        side of it (of the rows in ``universe`` its other tests hold for): it holds for the same rows
        there, and its line lies inside the gap the reviews leave (``account_age_days lt 60`` between
        ages 40 and 84), not at a quantile cut on the edge of the cases that happened to be reviewed.
        Cuts of declared bands stay where they were declared; a band test's two cuts move each, to the
        roundest number nearest its own rows (``roundest_near``)."""
        if rule is None:
            return None
        tests = list(rule.tests)
        for k, test in enumerate(tests):
            column = self.numbers.get(test.field)
            if column is None or test.op not in ("lt", "ge", "band") or test.value in self.fixed_cuts.get(test.field, ()):
                continue
            others = np.bitwise_and.reduce([universe] + [t.bits for j, t in enumerate(tests) if j != k])
            values = column[unpack(others, self.rows)]
            if test.op == "band":  # closed around its own rows: the reviews say nothing of the gaps beyond
                low, high = (self._between(values, cut, test.field, toward) for cut, toward in zip(test.value, ("above", "below")))
                if (low, high) != test.value:
                    tests[k] = Test(test.field, "band", (low, high), pack((column >= low) & (column < high)))
                continue
            cut = self._between(values, test.value, test.field)
            if cut != test.value:
                tests[k] = Test(test.field, test.op, cut, pack(column < cut if test.op == "lt" else column >= cut))
        return replace(rule, tests=tuple(tests))

    def _between(self, values: np.ndarray, cut: float, field: str, toward: str = "") -> float:
        """``cut`` moved to the roundest number between the nearest values on either side of it, nearest
        the middle of that gap, or nearest the values ``toward`` it ("above", "below": a band's own rows).
        A declared cut, or one with no value on a side, stays (a band's edges are checked here)."""
        below, above = values[values < cut], values[values >= cut]
        if cut in self.fixed_cuts.get(field, ()) or not below.size or not above.size:
            return cut
        low, high = float(below.max()), float(above.min())
        if toward:
            return roundest_near(low, high, high if toward == "above" else low)
        return roundest_between(low, high)

    def _narrowed(self, rule: InducedRule | None, positives: np.ndarray, correct: np.ndarray,
                  universe: np.ndarray) -> InducedRule | None:
        """The rule with one more test the notes name, on a field it does not test, when that test keeps
        every row of the group it explains and leaves out some other row (the broadest such test).

        At small N a broad condition ("campaign") holds on one or two requests of others that the
        reviewer agreed with, too few for the search to refine away (``MIN_REMOVED``); her notes
        say which departments the precedent is about, so the rule says so too."""
        if rule is None or not self._note_words:
            return rule
        fields = {t.field for t in rule.tests}
        best = None
        for test in self.tests:
            if test.field in fields or not self.named(test):
                continue
            bits = rule.bits & test.bits
            covered = count(bits)
            if covered < rule.covered and count(bits & positives) == rule.positives and (best is None or covered > best[1]):
                best = (test, covered, bits)
        if best is None:
            return rule
        test, covered, bits = best
        return InducedRule(rule.tests + (test,), bits, covered, rule.positives, count(bits & correct), rule.quality)

    def _named_in(self, hint: str) -> tuple[int, ...]:
        """Equality tests on entity fields whose value shares a word with the hint."""
        hint_words = {w for w in re.split(r"[^a-z0-9]+", hint.lower()) if len(w) >= 4}
        return tuple(i for i, t in enumerate(self.tests) if t.op == "eq" and t.field in self.preferred_fields
                     and hint_words & set(re.split(r"[^a-z0-9]+", str(t.value).lower())))

    def _search(self, positives, correct, min_support, universe, starts: tuple[int, ...]) -> InducedRule | None:
        group, contradicting = count(positives), count(universe & ~correct)
        base_rate = group / max(group + contradicting, 1)
        beam: list[tuple[tuple[int, ...], np.ndarray, int]] = [((), universe, count(universe))]
        if starts:
            beam = [((i,), universe & self.tests[i].bits, count(universe & self.tests[i].bits)) for i in starts]
        wrong = universe & ~correct
        best: InducedRule | None = None
        if starts:
            for chosen, bits, covered in beam:
                hit, right = count(bits & positives), count(bits & correct)
                quality = float(self._quality(np.array([hit]), np.array([covered - right]), base_rate)[0])
                if self._valid(hit, covered, right, min_support) and (best is None or quality > best.quality):
                    best = InducedRule(tuple(self.tests[i] for i in chosen), bits, covered, hit, right, quality)
        for _depth in range(self.max_tests - (1 if starts else 0)):
            extensions: list[tuple[float, tuple[int, ...], np.ndarray, int, int, int]] = []
            seen: set[frozenset[int]] = set()
            for chosen, bits, covered_now in beam:
                used = {self.tests[i].key for i in chosen}
                rows, covered, hit, right = self._counts(bits, positives, correct)
                quality = self._quality(hit, covered - right, base_rate)
                # a test refining a rule must take out real contradictions, not one noisy row
                enough = (count(bits & wrong) - (covered - right) >= MIN_REMOVED) if chosen else ~self.refine_only
                order = np.argsort(-quality)
                for i in order[: self.beam_width * 4]:
                    if hit[i] < min_support or covered[i] == covered_now or self.tests[i].key in used or not enough[i]:
                        continue
                    key = frozenset((*chosen, int(i)))
                    if key in seen:
                        continue
                    seen.add(key)
                    extensions.append((float(quality[i]), (*chosen, int(i)), rows[i], int(covered[i]), int(hit[i]), int(right[i])))
            if not extensions:
                break
            # On equal quality prefer fewer tests, then structured fields over keywords, then entity fields.
            extensions.sort(key=lambda e: (-round(e[0], 9), len(e[1]), self._plainness(e[1])))
            for q, chosen, bits, covered, hit, right in extensions:
                # a longer rule must beat the best so far by a margin (Occam: no spurious tests)
                margin = 1 + OCCAM_MARGIN if best is not None and len(chosen) > len(best.tests) else 1
                if self._valid(hit, covered, right, min_support) and (best is None or round(q, 9) > round(best.quality * margin, 9)):
                    best = InducedRule(tuple(self.tests[i] for i in chosen), bits, covered, hit, right, q)
            beam = [(chosen, bits, covered) for _q, chosen, bits, covered, _h, _r in extensions[: self.beam_width]]
        return self._pruned(best, positives, correct, min_support, universe, base_rate, keep=starts) if best else None

    def _pruned(self, rule: InducedRule, positives: np.ndarray, correct: np.ndarray, min_support: int,
                universe: np.ndarray, base_rate: float, keep: tuple[int, ...] = ()) -> InducedRule:
        """Drop tests whose removal costs less than the Occam margin (no spurious conditions)."""
        kept_start = {id(self.tests[i]) for i in keep}
        improved = True
        while improved and len(rule.tests) > 1:
            improved = False
            for drop in rule.tests:
                if id(drop) in kept_start:
                    continue
                kept = tuple(t for t in rule.tests if t is not drop)
                if all(t.op in REFINE_ONLY for t in kept):
                    continue
                bits = np.bitwise_and.reduce([universe] + [t.bits for t in kept])
                covered, hit, right = count(bits), count(bits & positives), count(bits & correct)
                quality = float(self._quality(np.array([hit]), np.array([covered - right]), base_rate)[0])
                noise_only = (covered - right) - (rule.covered - rule.correct) < MIN_REMOVED
                if self._valid(hit, covered, right, min_support) and (
                        noise_only or quality * (1 + OCCAM_MARGIN) >= rule.quality - 1e-9):
                    rule = InducedRule(kept, bits, covered, hit, right, quality)
                    improved = True
                    break
        return rule
