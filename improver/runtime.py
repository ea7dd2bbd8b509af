"""What a target agent imports to use an experiment's config: ``load_overlay``.

An experiment's config folder holds the target's own files plus improver's three
surfaces, each a plain file a target may also read itself:

- ``learned_rules.yaml`` — ``rules: [{id, when, decision, confidence, reason}]``, first match wins
- ``entity_notes.yaml`` — ``{entity_field: {value: [note, ...]}}``
- ``prompt_fragment.md`` — text to append to the agent's instructions

Only the standard library and PyYAML are imported here, so it is cheap in a target.
Agents may call ``load_overlay`` once per case: a folder is parsed once (with the C
YAML loader where PyYAML has it) and kept until one of the three files changes
(checked by modification time, size and inode on every call), and its rules are
compiled into plain functions, so ``load_overlay(d).match(case)`` costs about what a
loaded-once ``match`` does. An experiment's config folder (``experiments/<id>/config``
beside its ``manifest.yaml``, the folders improver reruns the agent with) is written once,
atomically, and never again, so it is not checked after its first read. The cached
``Overlay`` is shared: treat it as read-only.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from improver.conditions import compile_condition, validate

RULES_FILE = "learned_rules.yaml"
NOTES_FILE = "entity_notes.yaml"
PROMPT_FILE = "prompt_fragment.md"
SURFACE_FILES = (RULES_FILE, NOTES_FILE, PROMPT_FILE)
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it
CACHE_SIZE = 256  # config folders kept parsed
RACY_NS = 100_000_000  # a file changed this recently may change again within one timestamp tick
EXPERIMENT_ID = re.compile(r"[0-9]{4}-[a-z0-9][a-z0-9-]{0,63}\Z")  # improver.experiments.ID_PATTERN


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

    def __post_init__(self) -> None:
        compiled = tuple((compile_condition(r.when), RuleMatch(r.decision, r.confidence, r.id, r.reason)) for r in self.rules)
        object.__setattr__(self, "_compiled", compiled)

    def match(self, case: Mapping[str, Any]) -> RuleMatch | None:
        """The first learned rule whose condition holds for the case, or None."""
        for check, hit in self._compiled:
            if check(case):
                return hit
        return None

    def notes_for(self, case: Mapping[str, Any]) -> list[str]:
        """Entity notes that apply to the entity values present in the case."""
        found = []
        for entity_field, by_value in self.entity_notes.items():
            value = case.get(entity_field)
            found.extend(by_value.get(str(value), []) if value is not None else [])
        return found


def _parse_yaml(text: str | None, path: Path) -> Any:
    if text is None:
        return None
    try:
        return yaml.load(text, Loader=YAML_LOADER)
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


def _stamp(paths: tuple[str, ...]) -> tuple:
    stamp = []
    for path in paths:
        try:
            info = os.stat(path)
            stamp.append((info.st_mtime_ns, info.st_size, info.st_ino))
        except FileNotFoundError:
            stamp.append(None)
    return tuple(stamp)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


@dataclass
class _Cached:
    paths: tuple[str, ...]
    stamp: tuple
    texts: tuple[str | None, ...]
    overlay: Overlay
    settled: bool  # no file changed within RACY_NS of when it was checked, so the stamp alone decides
    written_once: bool  # an experiment's config folder: never rewritten, never checked again


_cache: dict[str, _Cached] = {}


def load_overlay(config_dir: str | Path) -> Overlay:
    """The learned surfaces of a config folder (absent files mean an empty overlay), cached
    until one of its files changes."""
    folder = config_dir if type(config_dir) is str else os.fspath(config_dir)
    if not os.path.isabs(folder):
        folder = os.path.abspath(folder)
    cached = _cache.get(folder)
    if cached is not None:
        if cached.written_once:
            return cached.overlay
        stamp = _stamp(cached.paths)
        if stamp == cached.stamp and (cached.settled or _settle(cached)):
            return cached.overlay
    paths = tuple(os.path.join(folder, name) for name in SURFACE_FILES)
    stamp = _stamp(paths)
    texts = tuple(_read(path) for path in paths)
    overlay = parse_overlay(*texts, folder=Path(folder))
    if len(_cache) >= CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    _cache[folder] = _Cached(paths, stamp, texts, overlay, _quiet(stamp), _experiment_config(folder))
    return overlay


def _experiment_config(folder: str) -> bool:
    """Whether ``folder`` is an experiment's config: ``<id>/config`` beside ``<id>/manifest.yaml``."""
    parent = os.path.dirname(folder)
    return (os.path.basename(folder) == "config" and EXPERIMENT_ID.match(os.path.basename(parent)) is not None
            and os.path.isfile(os.path.join(parent, "manifest.yaml")))


def _quiet(stamp: tuple) -> bool:
    """Whether every file is older than one timestamp tick: a later change then shows in its mtime."""
    newest = max((s[0] for s in stamp if s is not None), default=0)
    return time.time_ns() - newest > RACY_NS


def _settle(cached: _Cached) -> bool:
    """For a folder written moments ago: the stamp matches, so compare the contents too."""
    if tuple(_read(path) for path in cached.paths) != cached.texts:
        return False
    cached.settled = _quiet(cached.stamp)
    return True


def parse_overlay(rules_text: str | None, notes_text: str | None, prompt: str | None, folder: Path = Path(".")) -> Overlay:
    """An overlay from the texts of the three surface files (None for an absent file)."""
    rules = parse_rules(_parse_yaml(rules_text, folder / RULES_FILE), str(folder / RULES_FILE))
    notes = _parse_yaml(notes_text, folder / NOTES_FILE) or {}
    if not isinstance(notes, Mapping):
        raise ValueError(f"{folder / NOTES_FILE}: expected {{entity_field: {{value: [notes]}}}}")
    return Overlay(
        rules=rules,
        entity_notes={str(f): {str(v): list(n) for v, n in (by or {}).items()} for f, by in notes.items()},
        prompt_fragment=prompt or "",
    )
