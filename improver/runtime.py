"""What a target agent imports to use an experiment's config: ``load_overlay``.

An experiment's config folder holds the target's own files plus improver's three
surfaces, each a plain file a target may also read itself:

- ``learned_rules.yaml`` — ``rules: [{id, when, decision, confidence, reason}]``, first match wins
- ``entity_notes.yaml`` — ``{entity_field: {value: [note, ...]}}``
- ``prompt_fragment.md`` — text to append to the agent's instructions

Only the standard library and PyYAML are imported here, so it is cheap in a target.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from improver.conditions import matches, validate

RULES_FILE = "learned_rules.yaml"
NOTES_FILE = "entity_notes.yaml"
PROMPT_FILE = "prompt_fragment.md"
SURFACE_FILES = (RULES_FILE, NOTES_FILE, PROMPT_FILE)


@dataclass(frozen=True)
class RuleMatch:
    """The decision a learned rule gives for a case."""

    decision: str
    confidence: str
    id: str
    reason: str


@dataclass(frozen=True)
class Rule:
    id: str
    when: dict[str, dict[str, Any]]
    decision: str
    confidence: str = "high"
    reason: str = ""


@dataclass(frozen=True)
class Overlay:
    """Learned rules, entity notes and prompt fragment of one config folder."""

    rules: tuple[Rule, ...] = ()
    entity_notes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    prompt_fragment: str = ""

    def match(self, case: Mapping[str, Any]) -> RuleMatch | None:
        """The first learned rule whose condition holds for the case, or None."""
        for rule in self.rules:
            if matches(rule.when, case):
                return RuleMatch(rule.decision, rule.confidence, rule.id, rule.reason)
        return None

    def notes_for(self, case: Mapping[str, Any]) -> list[str]:
        """Entity notes that apply to the entity values present in the case."""
        found = []
        for entity_field, by_value in self.entity_notes.items():
            value = case.get(entity_field)
            found.extend(by_value.get(str(value), []) if value is not None else [])
        return found


def _read_yaml(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error}); fix or delete the file") from error


def parse_rules(data: Any, where: str) -> tuple[Rule, ...]:
    """Rules from the parsed ``learned_rules.yaml`` document; ValueError says what is wrong."""
    if data is None:
        return ()
    if not isinstance(data, Mapping) or not isinstance(data.get("rules", []), list):
        raise ValueError(f"{where}: expected a mapping with a 'rules' list")
    rules = []
    for index, item in enumerate(data.get("rules") or []):
        label = f"{where}: rule {index + 1}"
        if not isinstance(item, Mapping) or "decision" not in item or "when" not in item:
            raise ValueError(f"{label} needs at least 'when' and 'decision'")
        validate(item["when"], label)
        rules.append(
            Rule(
                id=str(item.get("id", f"rule-{index + 1}")),
                when={str(k): dict(v) for k, v in item["when"].items()},
                decision=str(item["decision"]),
                confidence=str(item.get("confidence", "high")),
                reason=str(item.get("reason", "")),
            )
        )
    return tuple(rules)


def load_overlay(config_dir: str | Path) -> Overlay:
    """Read the learned surfaces of a config folder; absent files mean an empty overlay."""
    folder = Path(config_dir)
    rules = parse_rules(_read_yaml(folder / RULES_FILE), str(folder / RULES_FILE))
    notes = _read_yaml(folder / NOTES_FILE) or {}
    if not isinstance(notes, Mapping):
        raise ValueError(f"{folder / NOTES_FILE}: expected {{entity_field: {{value: [notes]}}}}")
    prompt_path = folder / PROMPT_FILE
    prompt = prompt_path.read_text(encoding="utf-8") if prompt_path.exists() else ""
    return Overlay(
        rules=rules,
        entity_notes={str(f): {str(v): list(n) for v, n in (by or {}).items()} for f, by in notes.items()},
        prompt_fragment=prompt,
    )
