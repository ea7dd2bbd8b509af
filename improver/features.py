"""Case features for mining: every candidate test on a case field, as a packed bitset.

Field kinds are inferred from the values: numbers get threshold tests at round cut
points (quantiles of all values, and of the values off the field's most common one, so
a mostly-zero field still gets cuts among its non-zero values), short strings and
booleans get equality tests, and a string field of few values also gets set tests
(``in`` a pair of its values, as "urgent or emergency"); free text gets keyword tests.
Id-like fields (nearly every value distinct, short) are skipped.
"""
from __future__ import annotations

import hashlib
import math
import operator
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from improver.conditions import MISSING, as_number, field_value, holds

STOPWORDS = frozenset(
    "the a an and or of to in for on with from by at is are was were be been this that these those it its as "
    "our we us they them their you your not no but if then than so per via into over under about after before "
    "need needs needed request requests requested will would should could can may must also more most very "
    "have has had do does did all any each other same new one two three".split()
)
MAX_SET_VALUES = 12  # a string field with at most this many values gets ``in`` tests on pairs of them
WORD = re.compile(r"\w{3,}")  # whole \w runs, so keyword tests agree with the ``contains`` operator


@dataclass(frozen=True)
class Test:
    """One candidate test: ``field op value`` and the rows it holds for."""

    field: str
    op: str
    value: Any
    bits: np.ndarray  # packed uint64 bitset over rows

    @property
    def key(self) -> tuple[str, str]:
        return (self.field, self.op)


def pack(mask: np.ndarray) -> np.ndarray:
    """A boolean row mask as a bitset of uint64 words."""
    padded = np.zeros(((len(mask) + 63) // 64) * 64, dtype=bool)
    padded[: len(mask)] = mask
    return np.packbits(padded, bitorder="little").view(np.uint64)


def count(bits: np.ndarray) -> int:
    return int(np.bitwise_count(bits).sum())


def unpack(bits: np.ndarray, rows: int) -> np.ndarray:
    return np.unpackbits(bits.view(np.uint8), bitorder="little")[:rows].astype(bool)


def round_cut(value: float) -> float:
    """A cut point snapped to two significant digits (4,873 -> 4,900)."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    digits = 1 - int(math.floor(math.log10(abs(value))))
    return float(round(value, digits))


@lru_cache(maxsize=65536)
def words(text: str) -> frozenset[str]:
    """The keywords of a text (cached: case fields and notes repeat their texts across sessions)."""
    return frozenset(w for w in WORD.findall(text.lower()) if not w.isdigit()) - STOPWORDS


def _paths(case: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in case.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            paths.extend(_paths(value, path + "."))
        else:
            paths.append(path)
    return paths


def shared_columns(cases: Sequence[dict]) -> dict[str, Sequence]:
    """Each top-level field as a column, read in one pass, when every case is a dict with the same
    keys in the same order (as cases read from one source are); else nothing."""
    first = cases[0] if cases else None
    keys = tuple(first) if type(first) is dict else ()
    if keys and all(type(case) is dict and tuple(case) == keys for case in cases):
        return dict(zip(keys, zip(*[tuple(case.values()) for case in cases])))
    return {}


def case_columns(cases: Sequence[dict], paths: Sequence[str], shared: dict[str, Sequence] | None = None) -> dict[str, Sequence]:
    """``column_values`` of each path (top-level fields from ``shared``, the cases' ``shared_columns``, where it can)."""
    shared = shared_columns(cases) if shared is None else shared
    return {path: shared[path] if path in shared else column_values(cases, path) for path in paths}


def column_values(cases: Sequence[dict], path: str) -> list:
    """The value at ``path`` in every case (``MISSING`` where absent): one dict lookup a row for a top-level field."""
    if "." in path:
        return [field_value(case, path) for case in cases]
    return [case.get(path, MISSING) if type(case) is dict else field_value(case, path) for case in cases]


def build_tests(cases: Sequence[dict], min_count: int = 3, bands: dict[str, list[float]] | None = None,
                max_keywords: int = 400, named: frozenset[str] = frozenset(), named_min_count: int | None = None,
                shared: dict[str, Sequence] | None = None) -> list[Test]:
    """Every candidate test over the cases that holds for at least ``min_count`` rows; a keyword in
    ``named`` (words of the reviewers' notes) from ``named_min_count`` rows. ``shared``: the cases'
    ``shared_columns``, when the caller has them."""
    rows = len(cases)
    if rows == 0:
        return []
    sample = cases[: min(rows, 2000)]
    paths = sorted({p for case in sample for p in _paths(case)})
    tests: list[Test] = []
    for path, values in case_columns(cases, paths, shared).items():
        kind, present = _kind(values)
        if len(present) < min_count:
            continue
        if kind is bool:
            tests += _equality_tests(path, _codes(values), min_count, rows)
        elif kind is float:
            tests += _numeric_tests(path, values, min_count, rows, (bands or {}).get(path, []))
        elif kind is str:
            coded = _codes(values)
            distinct = len(coded[0])  # the distinct texts
            average_length = sum(map(len, present[:2000])) / min(len(present), 2000)
            if average_length > 25 or (distinct > 50 and " " in "".join(present[:200])):
                tests += _keyword_tests(path, coded, min_count, rows, max_keywords, named,
                                        min_count if named_min_count is None else named_min_count)
            elif distinct <= max(50, rows // 20) and distinct < 0.9 * len(present):
                tests += _equality_tests(path, coded, min_count, rows)
                if 3 <= distinct <= MAX_SET_VALUES:
                    tests += _set_tests(path, coded, min_count, rows)
    return tests


PLAIN_KINDS = frozenset({bool, int, float, str, type(None), type(MISSING), list, dict})  # what JSON cases hold
NUMBER_KINDS = frozenset({bool, int, float})  # equal across kinds (1 == 1.0 == True)
UNTESTED_KINDS = frozenset({type(None), type(MISSING), list, dict})  # absent, null or nested: no test holds


def _kind(values: list) -> tuple[type | None, list]:
    """What tests a column gets: ``bool`` (every value tested is a boolean), ``float`` (a number),
    ``str``, or None (mixed); and the values tested (absent, null, lists and dicts left out).
    Told from the set of the values' types when they are JSON's (in C), else value by value."""
    kinds = set(map(type, values))
    if kinds <= PLAIN_KINDS:
        present = values if kinds.isdisjoint(UNTESTED_KINDS) else [v for v in values if type(v) not in UNTESTED_KINDS]
        kinds -= UNTESTED_KINDS
        kind = bool if kinds == {bool} else float if kinds <= {bool, int, float} else str if kinds == {str} else None
        return kind, present
    present = [v for v in values if v is not None and v is not MISSING and not isinstance(v, (list, dict))]
    if all(isinstance(v, bool) for v in present):
        return bool, present
    if all(isinstance(v, (int, float)) for v in present):
        return float, present
    return (str if all(isinstance(v, str) for v in present) else None), present


def _codes(values: list) -> tuple[list, np.ndarray]:
    """Each string or boolean value of a column, in order of first appearance, and each row's index
    into them (-1 for other values)."""
    try:
        first = dict.fromkeys(values)  # hashing in C; a list or dict among the values raises
    except TypeError:
        values = [v if isinstance(v, (str, bool)) else None for v in values]
        first = dict.fromkeys(values)
    distinct = [v for v in first if isinstance(v, (str, bool))]
    index = dict.fromkeys(first, -1) | {v: i for i, v in enumerate(distinct)}
    return distinct, np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))


def _counts(coded: tuple[list, np.ndarray]) -> np.ndarray:
    """How many rows hold each value of a column coded by ``_codes``."""
    distinct, codes = coded
    return np.bincount(codes[codes >= 0], minlength=len(distinct))


def _equality_tests(path: str, coded: tuple[list, np.ndarray], min_count: int, rows: int) -> list[Test]:
    """``eq`` tests on each value of a column coded by ``_codes``."""
    distinct, codes = coded
    counts = _counts(coded)
    return [Test(path, "eq", value, pack(codes == code)) for code, value in enumerate(distinct)
            if min_count <= counts[code] < rows]


def _set_tests(path: str, coded: tuple[list, np.ndarray], min_count: int, rows: int) -> list[Test]:
    """``in`` tests on every pair of a few-valued string field's values (sorted, so stable), coded by ``_codes``."""
    distinct, codes = coded
    counts = _counts(coded)
    code_of = {v: code for code, v in enumerate(distinct) if isinstance(v, str)}
    values = sorted(code_of)
    tests = []
    for i, first in enumerate(values):
        for second in values[i + 1:]:
            a, b = code_of[first], code_of[second]
            if min_count <= counts[a] + counts[b] < rows and counts[a] and counts[b]:
                tests.append(Test(path, "in", [first, second], pack((codes == a) | (codes == b))))
    return tests


def _cut_points(finite: np.ndarray, min_count: int) -> set[float]:
    """Round cut points at quantiles of the values, and of those off the most common value
    when it holds most rows: as many of those as bins of ``min_count`` values they make."""
    cuts = {round_cut(q) for q in np.quantile(finite, np.linspace(0.05, 0.95, 19))}
    values, counts = np.unique(finite, return_counts=True)
    rest = finite[finite != values[counts.argmax()]]
    bins = min(20, len(rest) // max(min_count, 1))
    if bins >= 2 and len(rest) < 0.5 * len(finite):
        cuts |= {round_cut(q) for q in np.quantile(rest, np.arange(1, bins) / bins)}
    return cuts


def numeric_column(values: Sequence) -> np.ndarray:
    """A field's values as floats, NaN where a value is not a number (booleans are not)."""
    return np.array([float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan for v in values])


def roundest_between(low: float, high: float) -> float:
    """The number in (low, high] with the fewest significant digits (where a person draws a line:
    60 between 41 and 84), nearest the middle of the gap; ties to the smaller."""
    if low < 0 <= high:
        return 0.0
    middle = (low + high) / 2
    step = 10.0 ** math.floor(math.log10(max(abs(low), abs(high))))
    for _ in range(15):
        first, last = math.floor(low / step) + 1, math.floor(high / step)
        if first <= last:
            k = min(range(first, last + 1), key=lambda k: (abs(k * step - middle), k))
            return float(round(k * step, max(0, -math.floor(math.log10(step)))))
        step /= 10
    return float(high)


def roundest_near(low: float, high: float, toward: float) -> float:
    """The number in (low, high] with the fewest significant digits, nearest ``toward`` (one end of the
    gap): where a person closes a band around the rows it holds, 5,000 above rows up to 4,990 when the
    next row lies at 12,000 (``roundest_between`` takes 10,000, nearer the middle). For gaps of
    positive numbers; others go to ``roundest_between``."""
    if low <= 0 or high <= low:
        return roundest_between(low, high)
    top = math.floor(math.log10(high))
    for digits in range(1, 16):
        found = []
        for exponent in range(top, math.floor(math.log10(low)) - 1, -1):
            step = 10.0 ** (exponent - digits + 1)
            first = max(math.floor(low / step) + 1, round(10.0 ** exponent / step))
            last = min(math.floor(high / step), round(10.0 ** (exponent + 1) / step) - 1)
            if first <= last:
                k = min(max(round(toward / step), first), last)
                found.append(float(round(k * step, max(0, -math.floor(math.log10(step))))))
        if found:
            return min(found, key=lambda value: (abs(value - toward), value))
    return float(high)


def _numeric_tests(path: str, values: list, min_count: int, rows: int, declared: list[float]) -> list[Test]:
    column = numeric_column(values)
    finite = column[np.isfinite(column)]
    if len(np.unique(finite)) < 2:
        return []
    cuts = _cut_points(finite, min_count) | {float(c) for c in declared}
    tests = []
    with np.errstate(invalid="ignore"):
        for cut in sorted(cuts):
            above = column >= cut
            below = column < cut
            if min_count <= above.sum() < rows:
                tests.append(Test(path, "ge", cut, pack(above)))
            if min_count <= below.sum() < rows:
                tests.append(Test(path, "lt", cut, pack(below)))
    return tests


def _keyword_tests(path: str, coded: tuple[list, np.ndarray], min_count: int, rows: int, max_keywords: int,
                   named: frozenset[str] = frozenset(), named_min_count: int | None = None) -> list[Test]:
    """Keyword tests on a text column coded by ``_codes``, each distinct text's words read once (a
    text field repeats its texts)."""
    texts, codes = coded
    repeats = _counts(coded)
    frequency: Counter = Counter()
    for text, times in zip(texts, repeats.tolist()):
        for w in words(text):
            frequency[w] += times
    ranked = sorted(frequency, key=lambda w: (-frequency[w], w))  # ties by word: the same on every run
    least = min_count if named_min_count is None else named_min_count
    vocabulary = [w for w in ranked if (min_count if w not in named else least) <= frequency[w] <= 0.5 * rows][:max_keywords]
    index = {w: i for i, w in enumerate(vocabulary)}
    hits = np.zeros((len(vocabulary), len(texts) + 1), dtype=bool)  # per text, and a last column for rows without one
    for column, text in enumerate(texts):
        for w in words(text):
            i = index.get(w)
            if i is not None:
                hits[i, column] = True
    by_row = hits[:, codes]  # code -1: the last column
    return [Test(path, "contains", w, pack(by_row[i])) for i, w in enumerate(vocabulary)]


class TestCounts:
    """How many rows of a row set each test holds for, over one tests × rows bitset matrix.

    The same answer as ``bitwise_count(matrix & rows).sum(axis=1)``, found the cheapest way:
    a set of few rows (or of all but a few) is counted on a row-major copy of the tests, one
    byte per test and row, gathering only its rows; other sets are counted on the bitsets,
    into a buffer kept for the purpose, the tests split between two threads when the matrix is
    large (numpy lets go of the GIL: at 100k rows the pass takes half the time). Row sets asked
    about again are answered from memory (a rule search asks about the same sets many times)."""

    SPARSE = 16  # a set of fewer than rows/SPARSE rows (or missing fewer) is counted row by row
    DENSE_BYTES = 256 * 2**20  # the row-major copy is made only when it fits in this
    REMEMBERED = 4096  # counts kept for sets asked about again
    SPLIT_WORDS = 2**18  # a matrix of more words than this is counted in two halves at once

    def __init__(self, matrix: np.ndarray, rows: int):
        self.matrix, self.rows = matrix, rows
        self._dense: np.ndarray | None = None
        self._totals: np.ndarray | None = None
        self._buffer: np.ndarray | None = None
        self._known: dict[bytes, np.ndarray] = {}

    def __call__(self, bits: np.ndarray) -> np.ndarray:
        """Per test, the rows of ``bits`` (a packed bitset over the rows) it holds for, as int64."""
        key = hashlib.blake2b(bits.tobytes(), digest_size=16).digest()
        found = self._known.get(key)
        if found is None:
            found = self._count(bits)
            if len(self._known) >= self.REMEMBERED:
                self._known.clear()
            self._known[key] = found
        return found

    def _count(self, bits: np.ndarray) -> np.ndarray:
        n = count(bits)
        tests = len(self.matrix)
        few, most = n * self.SPARSE < self.rows, (self.rows - n) * self.SPARSE < self.rows
        if (few or most) and tests and self.rows * tests <= self.DENSE_BYTES:
            dense = self._row_major()
            flags = np.unpackbits(bits.view(np.uint8), count=self.rows, bitorder="little").view(bool)
            if few:
                return _column_sums(dense[np.flatnonzero(flags)])
            return self._totals - _column_sums(dense[np.flatnonzero(~flags)])
        if self._buffer is None:
            self._buffer = np.empty_like(self.matrix)
        found = np.empty(tests, dtype=np.uint64)
        self._halves(lambda start, end: self._count_bits(bits, start, end, found))
        return found.astype(np.int64)

    def _count_bits(self, bits: np.ndarray, start: int, end: int, found: np.ndarray) -> None:
        """``found[start:end]``: the rows of ``bits`` each of those tests holds for."""
        block = self._buffer[start:end]
        np.bitwise_and(self.matrix[start:end], bits, out=block)
        np.bitwise_count(block, out=block)
        np.add.reduce(block, axis=1, out=found[start:end])

    def _halves(self, work) -> None:
        """``work(start, end)`` over the tests: in two halves at once when the matrix is large."""
        tests = len(self.matrix)
        if self.matrix.size <= self.SPLIT_WORDS or tests < 2:
            work(0, tests)
            return
        middle = tests // 2
        other = _helper().submit(work, middle, tests)
        work(0, middle)
        other.result()

    def _row_major(self) -> np.ndarray:
        if self._dense is None:
            self._dense = np.empty((self.rows, len(self.matrix)), dtype=np.uint8)
            self._halves(self._unpack)
            self._totals = _column_sums(self._dense)
        return self._dense

    def _unpack(self, start: int, end: int) -> None:
        """Tests ``start:end`` of the row-major copy."""
        unpacked = np.unpackbits(self.matrix[start:end].view(np.uint8), axis=1, count=self.rows, bitorder="little")
        self._dense[:, start:end] = unpacked.T


_helpers: dict[int, ThreadPoolExecutor] = {}


def _helper() -> ThreadPoolExecutor:
    """The thread that counts the second half of a large matrix's tests: one a process (a forked
    child has none of its parent's threads, so it starts its own)."""
    pid = os.getpid()
    if pid not in _helpers:
        _helpers.clear()
        _helpers[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="improver-counts")
    return _helpers[pid]


def _column_sums(block: np.ndarray) -> np.ndarray:
    """Column sums of a 0/1 byte block as int64 (summed in uint16 when that cannot overflow: 2x faster)."""
    return block.sum(axis=0, dtype=np.uint16 if len(block) < 2**16 else np.int64).astype(np.int64)


class Columns:
    """Case fields as columns, read once, for evaluating learned-rule conditions on many cases.

    Each field is also factorised once (its distinct values and a code per row), so a
    test is decided once per distinct value and spread to the rows with one numpy take."""

    REMEMBERED_ROWS = 50_000_000  # test results kept, at most this many rows in all (a byte each)

    def __init__(self, cases: Sequence[dict]):
        self.cases = cases
        self._values: dict[str, np.ndarray] = {}
        self._numbers: dict[str, np.ndarray] = {}
        self._codes: dict[str, tuple[list, np.ndarray] | None] = {}
        self._top_level: dict[str, Sequence] | None = None
        self._tests: dict[tuple, np.ndarray] = {}

    def values(self, path: str) -> Sequence:
        """Every case's value at ``path`` (``MISSING`` where absent), read once."""
        if path not in self._values:
            fields = self._fields()
            self._values[path] = fields[path] if path in fields else column_values(self.cases, path)
        return self._values[path]

    def _fields(self) -> dict[str, Sequence]:
        """Every top-level field as a column, read in one pass when first asked for (``shared_columns``)."""
        if self._top_level is None:
            self._top_level = shared_columns(self.cases)
        return self._top_level

    def top_level(self, rows: np.ndarray) -> dict[str, Sequence] | None:
        """Each top-level field's values at ``rows`` (``shared_columns`` of those cases), gathered from the
        columns read once; None when the cases do not all have the same fields in the same order (or for
        fewer than two rows, which the caller reads itself)."""
        fields = self._fields()
        if not fields or len(rows) < 2:
            return None
        pick = operator.itemgetter(*rows.tolist())
        return {path: pick(values) for path, values in fields.items()}

    def numbers(self, path: str) -> np.ndarray:
        if path not in self._numbers:
            values = self.values(path)
            if set(map(type, values)) <= {int, float}:  # as_number is float() for these: read in C
                self._numbers[path] = np.fromiter(values, dtype=float, count=len(values))
            else:
                numbers = [as_number(v) for v in values]  # numeric strings count, booleans do not
                self._numbers[path] = np.array([np.nan if v is None else v for v in numbers], dtype=float)
        return self._numbers[path]

    def factorised(self, path: str) -> tuple[list, np.ndarray] | None:
        """The distinct values of a field and each row's index into them (None if a value is unhashable)."""
        if path not in self._codes:
            column = self.values(path)
            kinds = set(map(type, column))
            # keyed by type too where 1, 1.0 and True meet: equal, but not the same to every operator
            keys = column if kinds <= PLAIN_KINDS and len(kinds & NUMBER_KINDS) < 2 else list(zip(map(type, column), column))
            try:
                index = dict.fromkeys(keys)
                for code, key in enumerate(index):
                    index[key] = code
                codes = np.fromiter(map(index.__getitem__, keys), dtype=np.int64, count=len(column))
                self._codes[path] = (list(index) if keys is column else [v for _, v in index], codes)
            except TypeError:  # a list or dict among the values
                self._codes[path] = None
        return self._codes[path]

    def test(self, path: str, op: str, expected) -> np.ndarray:
        """Rows for which one operator test holds (same semantics as ``conditions.holds``), read-only:
        kept for the next stage that asks (a rule's tests are asked for by cross-validation, the
        deployability check and leave-one-out in turn; a keyword test reads every distinct text)."""
        key = (path, op, repr(expected))  # repr: 1, 1.0 and True are not the same test
        found = self._tests.get(key)
        if found is None:
            if len(self._tests) * len(self.cases) >= self.REMEMBERED_ROWS:
                self._tests.clear()
            found = self._tests[key] = self._test(path, op, expected)
            found.flags.writeable = False
        return found

    def _test(self, path: str, op: str, expected) -> np.ndarray:
        if op in ("lt", "le", "gt", "ge") and isinstance(expected, (int, float)) and not isinstance(expected, bool):
            with np.errstate(invalid="ignore"):
                column = self.numbers(path)
                return {"lt": column < expected, "le": column <= expected,
                        "gt": column > expected, "ge": column >= expected}[op]
        factorised = self.factorised(path)
        if factorised is None:
            values = self.values(path)
            return np.fromiter((holds(v, op, expected) for v in values), dtype=bool, count=len(values))
        distinct, codes = factorised
        return np.fromiter((holds(v, op, expected) for v in distinct), dtype=bool, count=len(distinct))[codes]

    def mask(self, condition: dict[str, dict]) -> np.ndarray:
        """Rows whose case satisfies the condition (same semantics as ``conditions.matches``)."""
        mask = np.ones(len(self.cases), dtype=bool)
        for path, tests in condition.items():
            for op, expected in tests.items():
                mask &= self.test(path, op, expected)
        return mask
