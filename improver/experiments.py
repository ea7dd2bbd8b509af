"""Experiment folders: ``experiments/<id>/`` with manifest, patch, config, report, results.

Each folder is assembled in a temporary sibling and renamed into place, so it appears
whole or not at all; files added later (decisions, results) are written the same way
and never overwritten. Ids are ``NNNN-slug`` and validated before any path is built.
With a ``scan`` (the project's leak scan), every file is checked before it is written,
so an experiment that would hold personal data or a secret is never written at all.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import orjson
import yaml
from pydantic import BaseModel, Field, ValidationError

from improver.errors import ExperimentError

SCHEMA_VERSION = 1
ID_PATTERN = re.compile(r"[0-9]{4}-[a-z0-9][a-z0-9-]{0,63}\Z")  # \Z, not $: "$" also matches before a final newline
STATUSES = ("proposed", "accepted", "merged", "rejected")


class Proposal(BaseModel):
    """One change on the target's surfaces, with the evidence behind it."""

    id: str
    precedent: str
    source: str
    decision: str
    when: dict[str, dict[str, Any]]
    condition: str
    confidence: str = "high"
    reason: str
    support: int
    covered: int
    precision: float
    evidence_sessions: list[str]
    conflicts: list[str] = Field(default_factory=list)
    quotes: list[str] = Field(default_factory=list)
    entity_notes: dict[str, dict[str, str]] = Field(default_factory=dict)
    expected_effect: dict[str, float] = Field(default_factory=dict)
    cv: dict[str, Any] = Field(default_factory=dict, description="per-fold evidence: folds found in, out-of-fold effects")


class Manifest(BaseModel):
    id: str
    parent: str | None = None
    created: str
    schema_version: int = SCHEMA_VERSION
    kind: str = Field(description="baseline, cycle, gated or review")
    cycle: int = 0
    config_hash: str = ""
    proposals: list[Proposal] = Field(default_factory=list)
    guidance: list[str] = Field(default_factory=list, description="prompt lines from meta-findings")
    mining: dict[str, Any] = Field(default_factory=dict)
    agent: dict[str, Any] | None = Field(None, description="LLM mining agent usage: turns, tokens, cost")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_id(experiment_id: str) -> str:
    if not isinstance(experiment_id, str) or not ID_PATTERN.match(experiment_id):
        raise ExperimentError(f"invalid experiment id {experiment_id!r}: ids look like 0003-cycle-2 "
                              "(see `improver log` for the ids that exist)")
    return experiment_id


def read_tree(folder: Path) -> dict[str, str]:
    """Every text file under a folder, by relative path."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            files[path.relative_to(folder).as_posix()] = path.read_text(encoding="utf-8")
    return files


def tree_hash(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def unified_diff(old: dict[str, str], new: dict[str, str]) -> str:
    """A git-style unified diff between two config trees (paths relative to the config folder)."""
    chunks = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        lines = difflib.unified_diff(
            (before or "").splitlines(keepends=True), (after or "").splitlines(keepends=True),
            fromfile="/dev/null" if before is None else f"a/{name}", tofile="/dev/null" if after is None else f"b/{name}")
        header = f"diff --git a/{name} b/{name}\n"
        if before is None:
            header += "new file mode 100644\n"
        elif after is None:
            header += "deleted file mode 100644\n"
        body = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
        chunks.append(header + body)
    return "".join(chunks)


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write a file that did not exist, atomically; ExperimentError if it exists."""
    if path.exists():
        raise ExperimentError(f"{path} already exists and experiments are never overwritten; "
                              "make a new experiment instead")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(content.encode("utf-8") if isinstance(content, str) else content)
    os.link(temporary, path)  # fails if path appeared meanwhile: no overwrite
    os.unlink(temporary)


class Scan(Protocol):
    """The project's leak scan (``improver.leakscan.LeakScan``): raises LeakError on a leak."""

    def check(self, text: str, where: str) -> None: ...

    def find_rows(self, rows: list[dict]) -> dict: ...

    def refuse(self, found: dict, where: str) -> None: ...


YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it
YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: the same text, ~7x faster on a 32-rule file
_parsed: dict[Path, tuple[tuple[int, int, int], Any]] = {}


def read_manifest(path: Path) -> Any:
    """A manifest file parsed once per process while it is unchanged (manifests are written once; a cross-
    validated one holds every fold's rules, and loops read every manifest again and again)."""
    stat = path.stat()
    key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    cached = _parsed.get(path)
    if cached is None or cached[0] != key:
        cached = _parsed[path] = (key, yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER))
    return cached[1]


class Experiment:
    """One experiment folder on disk."""

    def __init__(self, path: Path, scan: Scan | None = None):
        self.path = path
        self.scan = scan
        self.id = path.name
        self._results: dict | None = None
        try:
            self.manifest = Manifest.model_validate(read_manifest(path / "manifest.yaml"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError) as error:
            raise ExperimentError(f"experiment {self.id}: manifest.yaml is damaged ({_reason(error)}); "
                                  f"restore it from version control or move {path} aside") from None

    @property
    def config_dir(self) -> Path:
        return self.path / "config"

    @property
    def results(self) -> dict | None:
        """The scores, or None if not scored yet; ExperimentError if results.json is damaged."""
        path = self.path / "results.json"
        if self._results is None and path.exists():
            try:
                self._results = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(self._results, dict):
                    raise ValueError("not a JSON object")
            except (OSError, UnicodeDecodeError, ValueError) as error:
                self._results = None
                raise ExperimentError(f"experiment {self.id}: results.json is damaged ({_reason(error)}); "
                                      f"move it aside and run `improver score {self.id}` again") from None
        return self._results

    @property
    def decisions(self) -> dict[str, dict] | None:
        """Each session's decision, or None if not run yet; a damaged file (truncated, say) counts as not run."""
        return self._read_decisions()[0]

    def _read_decisions(self) -> tuple[dict[str, dict] | None, str | None]:
        path = self.path / "decisions.jsonl"
        if not path.exists():
            return None, None
        try:
            rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
            return {row["session_id"]: row for row in rows}, None
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as error:
            return None, _reason(error)

    @property
    def status(self) -> str:
        path = self.path / "status.json"
        return json.loads(path.read_text(encoding="utf-8"))["status"] if path.exists() else "proposed"

    def set_status(self, status: str, note: str = "") -> None:
        if status not in STATUSES:
            raise ExperimentError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
        temporary = self.path / ".status.json.tmp"
        temporary.write_text(json.dumps({"status": status, "note": note, "at": now()}), encoding="utf-8")
        os.replace(temporary, self.path / "status.json")

    def write_results(self, results: dict) -> None:
        self._write("results.json", json.dumps(results, indent=2, sort_keys=True) + "\n")
        self._results = None

    def _write(self, name: str, content: str | bytes) -> None:
        if self.scan:
            self.scan.check(content.decode("utf-8") if isinstance(content, bytes) else content, f"experiments/{self.id}/{name}")
        atomic_write(self.path / name, content)


class DecisionsFile:
    """An experiment's decisions file, one JSON line per session (orjson: ~5x json.dumps at 100k rows),
    made from slices of its rows as they come, so a rerun's leak scan and JSON overlap the target's
    work on the rest: ``add`` scans a slice and turns it into lines, ``write`` writes the file whole,
    or nothing when the scan found a leak anywhere. A damaged decisions file is moved aside first (kept
    as ``decisions.jsonl.damaged-<time>``)."""

    def __init__(self, experiment: Experiment):
        self.experiment = experiment
        self.lines: dict[int, bytes] = {}  # first row's index -> the slice's lines
        self.found: dict[int, Any] = {}  # line number -> kinds the leak scan found there

    def add(self, start: int, rows: list[dict]) -> None:
        if self.experiment.scan:
            self.found.update((start + number, kinds) for number, kinds in self.experiment.scan.find_rows(rows).items())
        self.lines[start] = b"".join([orjson.dumps(r) + b"\n" for r in rows])

    def write(self) -> None:
        experiment = self.experiment
        if experiment._read_decisions()[1]:
            os.rename(experiment.path / "decisions.jsonl", experiment.path / f"decisions.jsonl.damaged-{time.time_ns()}")
        if experiment.scan:
            experiment.scan.refuse(dict(sorted(self.found.items())), f"experiments/{experiment.id}/decisions.jsonl")
        atomic_write(experiment.path / "decisions.jsonl", b"".join(self.lines[start] for start in sorted(self.lines)))


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


class ExperimentStore:
    """The experiments folder of a project."""

    def __init__(self, folder: Path, scan: Scan | None = None):
        self.folder = folder
        self.scan = scan
        self.skipped: dict[str, str] = {}  # damaged experiments left out of all(), with the reason

    def ids(self) -> list[str]:
        if not self.folder.exists():
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir() and ID_PATTERN.match(p.name))

    def get(self, experiment_id: str) -> Experiment:
        path = self.folder / check_id(experiment_id)
        if not (path / "manifest.yaml").exists():
            known = ", ".join(self.ids()[-5:]) or "none yet"
            raise ExperimentError(f"no experiment {experiment_id!r} in {self.folder} (latest: {known})")
        return Experiment(path, self.scan)

    def all(self) -> list[Experiment]:
        """Every readable experiment; a damaged one is left out and named in ``skipped`` with its reason."""
        experiments = []
        self.skipped = {}
        for experiment_id in self.ids():
            try:
                experiment = Experiment(self.folder / experiment_id, self.scan)
                experiment.results  # noqa: B018  (parsed now: a damaged results.json is named here)
            except ExperimentError as error:
                self.skipped[experiment_id] = str(error)
                continue
            experiments.append(experiment)
        return experiments

    def next_id(self, slug: str) -> str:
        numbers = [int(i[:4]) for i in self.ids()]
        slug = re.sub(r"[^a-z0-9-]+", "-", slug.lower()).strip("-")[:48] or "experiment"
        return check_id(f"{(max(numbers) + 1 if numbers else 1):04d}-{slug}")

    def create(self, manifest: Manifest, config: dict[str, str], base_config: dict[str, str], report: str) -> Experiment:
        """Write a whole experiment folder atomically; its id must be new."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / check_id(manifest.id)
        if target.exists():
            raise ExperimentError(f"experiment {manifest.id} already exists; experiments are never overwritten")
        manifest.config_hash = tree_hash(config)
        files = {f"config/{name}": content for name, content in config.items()}
        files["manifest.yaml"] = yaml.dump(manifest.model_dump(mode="json"), Dumper=YAML_DUMPER, sort_keys=False,
                                              allow_unicode=True)
        files["patch.diff"] = unified_diff(base_config, config)
        files["report.md"] = report
        for name, content in files.items():
            if self.scan:
                self.scan.check(content, f"experiments/{manifest.id}/{name}")
        staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".{manifest.id}."))
        try:
            (staging / "config").mkdir()
            for name, content in files.items():
                path = staging / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content, encoding="utf-8")
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Experiment(target, self.scan)
