"""PII redaction before storage: mask personal data in events, keep the shape of the case.

``Redactor`` masks emails, phone numbers, card numbers (Luhn-checked), IBANs
(mod-97-checked), IP addresses, names from a configured list and custom patterns from
``improver.yaml``'s ``redaction:`` section. Only string values are touched: keys,
numbers and booleans stay, so a redacted case has the same fields and types and mining
still works. Each masked value becomes ``[KIND]`` and is counted by kind.
"""
from __future__ import annotations

import ipaddress
import re
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from improver.errors import ProjectError
from improver.models import DecisionEvent, Event, Quarantined, ReviewEvent

BUILTIN_KINDS = ("email", "iban", "card", "ip", "phone")


class RedactionConfig(BaseModel):
    """The ``redaction:`` section of improver.yaml."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    kinds: list[str] = Field(default_factory=lambda: list(BUILTIN_KINDS), description="built-in detectors to run")
    names: list[str] = Field(default_factory=list, description="people's names to mask wherever they appear")
    patterns: dict[str, str] = Field(default_factory=dict, description="kind -> regular expression")

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        unknown = set(kinds) - set(BUILTIN_KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}; choose from {', '.join(BUILTIN_KINDS)}")
        return kinds

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: dict[str, str]) -> dict[str, str]:
        for kind, pattern in patterns.items():
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"pattern {kind!r} is not a valid regular expression: {error}") from None
        return patterns


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _is_card(match: re.Match) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _is_ip(match: re.Match) -> bool:
    try:
        ipaddress.ip_address(match.group())
    except ValueError:
        return False
    return True


def _is_phone(match: re.Match) -> bool:
    text = match.group()
    digits = re.sub(r"\D", "", text)
    if re.fullmatch(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}", text):
        return False  # a date
    if text.startswith("+"):
        return 8 <= len(digits) <= 15
    return 10 <= len(digits) <= 15


# (kind, pattern, check): a match is masked when its check passes.
DETECTORS: list[tuple[str, re.Pattern, Callable[[re.Match], bool]]] = [
    ("email", re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), lambda m: True),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), lambda m: iban_valid(m.group())),
    ("card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _is_card),
    ("ip", re.compile(r"(?<![\w.:])(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![\w.:])"), _is_ip),
    ("phone", re.compile(r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,5}){1,4}(?![\w.-]|\.\d)"
                         r"|(?<![\w+])\+\d{8,15}\b"), _is_phone),
]


class Redactor:
    """Masks PII in strings and, recursively, in events; ``counts`` says what it masked by kind."""

    def __init__(self, config: RedactionConfig | None = None):
        self.config = config or RedactionConfig()
        self.counts: Counter = Counter()
        kinds = set(self.config.kinds)
        self.detectors = [d for d in DETECTORS if d[0] in kinds]
        for kind, pattern in self.config.patterns.items():
            self.detectors.append((kind, re.compile(pattern), lambda m: True))
        names = sorted({n.strip() for n in self.config.names if n.strip()}, key=len, reverse=True)
        if names:
            alternatives = "|".join(r"\s+".join(map(re.escape, name.split())) for name in names)
            self.detectors.append(("name", re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE), lambda m: True))
        self.builtin_only = len(self.detectors) == len(DETECTORS)

    @classmethod
    def from_project(cls, project) -> "Redactor | None":
        """The project's redactor, or None when ``redaction: {enabled: false}``."""
        try:
            config = RedactionConfig.model_validate(project.config.redaction or {})
        except ValidationError as error:
            problems = "; ".join(f"redaction.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ProjectError(f"{project.root / 'improver.yaml'}: {problems}") from None
        return cls(config) if config.enabled else None

    def text(self, value: str) -> str:
        if self.builtin_only and not any(c.isdigit() or c == "@" for c in value):
            return value  # nothing a built-in detector could match, and no names or custom patterns
        for kind, pattern, check in self.detectors:
            value = pattern.sub(lambda m: self._mask(kind, m, check), value)
        return value

    def _mask(self, kind: str, match: re.Match, check) -> str:
        if not check(match):
            return match.group()
        self.counts[kind] += 1
        return f"[{kind.upper()}]"

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def event(self, item: Event | Quarantined) -> Event | Quarantined:
        if isinstance(item, Quarantined):
            return item.model_copy(update={"raw": self.text(item.raw), "reason": self.text(item.reason)})
        if isinstance(item, DecisionEvent):
            return item.model_copy(update={"case": self.value(item.case), "reasoning": self.text(item.reasoning),
                                           "cited": self.value(item.cited)})
        assert isinstance(item, ReviewEvent)
        return item.model_copy(update={"reviewer": self.text(item.reviewer), "reasoning": self.text(item.reasoning),
                                       "precedent": self.text(item.precedent) if item.precedent else item.precedent,
                                       "conditions": self.value(item.conditions)})

    def events(self, items: Iterable[Event | Quarantined]) -> Iterator[Event | Quarantined]:
        for item in items:
            yield self.event(item)
