"""Conditions on case fields: the language learned rules are written in.

A condition is a mapping ``{field: {op: value}}``; every test must hold. Fields are
dotted paths into the case (``vendor``, ``requester.department``). Operators:
``eq``, ``ne``, ``in``, ``not_in``, ``lt``, ``le``, ``gt``, ``ge`` and ``contains``
(a whole word or phrase in a text field, case-insensitive). This module has no
dependencies beyond the standard library, so target agents can import it cheaply.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, Mapping

OPERATORS = ("eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "contains")
MISSING = object()


def field_value(case: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path in a case, or a sentinel when it is absent."""
    value: Any = case
    for part in path.split("."):
        if (type(value) is dict or isinstance(value, Mapping)) and part in value:  # dict first: ABC checks are slow
            value = value[part]
        else:
            return MISSING
    return value


@lru_cache(maxsize=4096)
def _word_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(phrase.lower()) + r"(?!\w)")


def as_number(value: Any) -> float | None:
    """A value as the number the ordering operators compare (numeric strings too), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def holds(value: Any, op: str, expected: Any) -> bool:
    """Whether one operator test holds for a field value (absent fields fail)."""
    if value is MISSING or value is None:
        return op in ("ne", "not_in")
    if op == "eq":
        return value == expected
    if op == "ne":
        return value != expected
    if op == "in":
        return value in expected
    if op == "not_in":
        return value not in expected
    if op == "contains":
        return isinstance(value, str) and bool(_word_pattern(str(expected)).search(value.lower()))
    number, bound = as_number(value), as_number(expected)
    if number is None or bound is None:
        return False
    return {"lt": number < bound, "le": number <= bound, "gt": number > bound, "ge": number >= bound}[op]


def matches(condition: Mapping[str, Mapping[str, Any]], case: Mapping[str, Any]) -> bool:
    """Whether every test of a condition holds for a case."""
    return all(
        holds(field_value(case, path), op, expected)
        for path, tests in condition.items()
        for op, expected in tests.items()
    )


def validate(condition: Any, where: str) -> None:
    """Raise ValueError naming ``where`` when a condition is not well formed."""
    if not isinstance(condition, Mapping) or not condition:
        raise ValueError(f"{where}: 'when' must be a non-empty mapping of field -> {{op: value}}")
    for path, tests in condition.items():
        if not isinstance(tests, Mapping) or not tests:
            raise ValueError(f"{where}: field {path!r} needs a mapping like {{eq: value}}")
        for op in tests:
            if op not in OPERATORS:
                raise ValueError(f"{where}: unknown operator {op!r} on {path!r}; use one of {', '.join(OPERATORS)}")


def describe(condition: Mapping[str, Mapping[str, Any]]) -> str:
    """A one-line human reading of a condition: ``department = Marketing AND amount < 5000``."""
    symbols = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "in", "not_in": "not in"}
    parts = []
    for path, tests in condition.items():
        for op, expected in tests.items():
            if op == "contains":
                parts.append(f'{path} mentions "{expected}"')
            else:
                shown = f"{expected:g}" if isinstance(expected, float) else expected
                parts.append(f"{path} {symbols[op]} {shown}")
    return " AND ".join(parts)


Check = Callable[[Mapping[str, Any]], bool]


def _getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    if "." in path:
        return lambda case: field_value(case, path)

    def get(case: Mapping[str, Any]) -> Any:
        if type(case) is dict:
            return case.get(path, MISSING)
        return field_value(case, path)
    return get


def _compile_test(path: str, op: str, expected: Any) -> Check:
    """One operator test as a closure with the same meaning as ``holds``."""
    get = _getter(path)
    if op == "eq":
        return lambda case: (v := get(case)) is not MISSING and v is not None and v == expected
    if op == "ne":
        return lambda case: (v := get(case)) is MISSING or v is None or v != expected
    if op == "in":
        return lambda case: (v := get(case)) is not MISSING and v is not None and v in expected
    if op == "not_in":
        return lambda case: (v := get(case)) is MISSING or v is None or v not in expected
    if op == "contains":
        search = _word_pattern(str(expected)).search
        return lambda case: isinstance(v := get(case), str) and search(v.lower()) is not None
    bound = as_number(expected)
    if bound is None or op not in ("lt", "le", "gt", "ge"):
        return lambda case: False
    compare = {"lt": bound.__gt__, "le": bound.__ge__, "gt": bound.__lt__, "ge": bound.__le__}[op]  # value OP bound

    def numeric(case: Mapping[str, Any]) -> bool:
        value = get(case)
        kind = type(value)
        if kind is int or kind is float:
            return compare(value)
        if value is MISSING or value is None:
            return False
        number = as_number(value)
        return number is not None and compare(number)
    return numeric


def compile_condition(condition: Mapping[str, Mapping[str, Any]]) -> Check:
    """A condition as one function of a case, equal to ``matches(condition, case)`` but faster."""
    checks = tuple(_compile_test(path, op, expected) for path, tests in condition.items() for op, expected in tests.items())
    if len(checks) == 1:
        return checks[0]

    def every(case: Mapping[str, Any]) -> bool:
        for check in checks:
            if not check(case):
                return False
        return True
    return every
