"""Rule induction: the compact condition that explains a group of human decisions.

A beam search over conjunctions of feature tests (at most ``max_tests``). Counts come
from packed bitsets, all candidate extensions of a beam entry at once. Quality is
``sqrt(positives covered) * (precision - base rate)``; a rule must cover at least
``min_support`` positives and its precision must clear ``min_precision`` with a Wilson
lower bound, so three lucky rows do not make a rule. Redundant tests are pruned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from improver.features import Test, count


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
        """The rule's condition in the ``{field: {op: value}}`` language of learned rules."""
        when: dict[str, dict] = {}
        for test in sorted(self.tests, key=lambda t: (t.field, t.op)):
            when.setdefault(test.field, {})[test.op] = test.value
        return when


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
                 min_precision: float = 0.75, min_wilson: float = 0.6):
        self.tests = tests
        self.rows = rows
        self.matrix = np.stack([t.bits for t in tests]) if tests else np.zeros((0, (rows + 63) // 64), np.uint64)
        self.beam_width = beam_width
        self.max_tests = max_tests
        self.min_precision = min_precision
        self.min_wilson = min_wilson

    def _counts(self, within: np.ndarray, positives: np.ndarray, correct: np.ndarray):
        rows = self.matrix & within
        covered = np.bitwise_count(rows).sum(axis=1, dtype=np.int64)
        hit = np.bitwise_count(rows & positives).sum(axis=1, dtype=np.int64)
        right = np.bitwise_count(rows & correct).sum(axis=1, dtype=np.int64)
        return rows, covered, hit, right

    def _keyword_tests(self, chosen: tuple[int, ...]) -> int:
        return sum(self.tests[i].op == "contains" for i in chosen)

    def _valid(self, positives: int, covered: int, correct: int, min_support: int) -> bool:
        return (positives >= min_support and covered > 0 and correct / covered >= self.min_precision
                and wilson_lower(correct, covered) >= self.min_wilson)

    def induce(self, positives: np.ndarray, correct: np.ndarray, min_support: int) -> InducedRule | None:
        """The best valid rule for ``positives`` (rows to explain) given ``correct``
        (every row whose human decision is the rule's decision), or None."""
        if not self.tests or count(positives) < min_support:
            return None
        base_rate = count(correct) / self.rows
        everything = np.full(self.matrix.shape[1], np.iinfo(np.uint64).max, dtype=np.uint64)
        beam: list[tuple[tuple[int, ...], np.ndarray, int]] = [((), everything, self.rows)]
        best: InducedRule | None = None
        for _depth in range(self.max_tests):
            extensions: list[tuple[float, tuple[int, ...], np.ndarray, int, int, int]] = []
            seen: set[frozenset[int]] = set()
            for chosen, bits, covered_now in beam:
                used = {self.tests[i].key for i in chosen}
                rows, covered, hit, right = self._counts(bits, positives, correct)
                with np.errstate(divide="ignore", invalid="ignore"):
                    quality = np.sqrt(hit) * (np.where(covered > 0, right / covered, 0) - base_rate)
                order = np.argsort(-quality)
                for i in order[: self.beam_width * 4]:
                    if hit[i] < min_support or covered[i] == covered_now or self.tests[i].key in used:
                        continue
                    key = frozenset((*chosen, int(i)))
                    if key in seen:
                        continue
                    seen.add(key)
                    extensions.append((float(quality[i]), (*chosen, int(i)), rows[i], int(covered[i]), int(hit[i]), int(right[i])))
            if not extensions:
                break
            # On equal quality prefer fewer tests, then tests on structured fields over keywords.
            extensions.sort(key=lambda e: (-round(e[0], 9), len(e[1]), self._keyword_tests(e[1])))
            for q, chosen, bits, covered, hit, right in extensions:
                if self._valid(hit, covered, right, min_support) and (best is None or round(q, 9) > round(best.quality, 9)):
                    best = InducedRule(tuple(self.tests[i] for i in chosen), bits, covered, hit, right, q)
            beam = [(chosen, bits, covered) for _q, chosen, bits, covered, _h, _r in extensions[: self.beam_width]]
        return self._pruned(best, positives, correct, min_support) if best else None

    def _pruned(self, rule: InducedRule, positives: np.ndarray, correct: np.ndarray, min_support: int) -> InducedRule:
        """Drop tests that do not lower the rule's quality (no spurious conditions)."""
        base_rate = count(correct) / self.rows
        improved = True
        while improved and len(rule.tests) > 1:
            improved = False
            for drop in rule.tests:
                kept = tuple(t for t in rule.tests if t is not drop)
                bits = np.bitwise_and.reduce([t.bits for t in kept])
                covered, hit, right = count(bits), count(bits & positives), count(bits & correct)
                quality = math.sqrt(hit) * (right / covered - base_rate) if covered else 0.0
                if self._valid(hit, covered, right, min_support) and quality >= rule.quality - 1e-9:
                    rule = InducedRule(kept, bits, covered, hit, right, quality)
                    improved = True
                    break
        return rule
