"""The project folder and its ``improver.yaml``: where the target, store and experiments are."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from improver.errors import ProjectError
from improver.sources import IngestLimits

PROJECT_FILE = "improver.yaml"
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
DATA_DIR = ".improver"


class TargetSpec(BaseModel):
    """How to run the agent under improvement (DESIGN.md, target agent contract)."""

    model_config = ConfigDict(extra="forbid")
    callable: str | None = Field(None, description="module:function taking (case, config_dir)")
    command: list[str] | None = Field(None, description="argv reading cases as JSONL on stdin; must hold {config_dir}; "
                                        "{python} is the interpreter improver runs in (its improver.runtime importable)")
    python_path: str | None = Field(None, description="folder added to sys.path to import the callable")
    config: str = Field(description="the target's base config folder")
    workers: int = Field(2, ge=1)
    runner: Literal["local", "async", "ray"] = Field("local", description="local: in process or a process pool; "
                                                     "async: an `async def decide`; ray: tasks on a Ray cluster")
    concurrency: int = Field(8, ge=1, description="async: cases in flight at once")
    rate_limit: float | None = Field(None, gt=0, description="async: at most this many cases started per second")
    timeout: float = Field(60, gt=0, description="seconds one case may take (a decide_batch call: its chunk)")
    ray_address: str | None = Field(None, description="ray: the cluster (ray://host:10001, auto); unset: local")
    cache: bool = Field(True, description="answer cases already decided with the same config from .improver/decisions.sqlite")
    cache_max_mb: float = Field(1024, gt=0, description="the decision cache's answers at most (MB); the runs of the "
                                "configs asked for least recently go first")
    max_error_share: float = Field(0.2, ge=0, le=1, description="a run with a larger share of errored cases fails")
    version: str | None = Field(None, description="the agent's version; when unset, a hash of its code is used")

    @model_validator(mode="after")
    def _one_kind(self) -> "TargetSpec":
        if bool(self.callable) == bool(self.command):
            raise ValueError("give exactly one of target.callable (module:function) or target.command (argv list)")
        if self.callable and ":" not in self.callable:
            raise ValueError(f"target.callable {self.callable!r} must look like module:function")
        if self.command and not any("{config_dir}" in part for part in self.command):
            raise ValueError("target.command must contain {config_dir} in one of its arguments")
        if self.command and self.runner != "local":
            raise ValueError(f"target.runner: {self.runner} runs a target.callable; a target.command runs with runner: local")
        return self


class ProjectConfig(BaseModel):
    """The parsed ``improver.yaml``."""

    model_config = ConfigDict(extra="forbid")
    target: TargetSpec
    entity_fields: list[str] = Field(default_factory=list)
    bands: dict[str, list[float]] = Field(default_factory=dict)
    decisions: list[str] = Field(default_factory=list)
    holdout: float = Field(0.0, ge=0, lt=1, description="locked test split: never mined, never gated on, reported apart")
    folds: int = Field(5, ge=1, description="cross-validation folds for mining and gating (1: one validation split)")
    cv_max_sessions: int = Field(5000, ge=0, description="from this many sessions on, one validation split instead of folds")
    validation: float = Field(0.2, gt=0, lt=1, description="share of the single validation split")
    min_evidence: int = Field(3, ge=1)
    experiments: str = "experiments"
    graph_store: str = "networkx"
    sources: dict[str, Any] = Field(default_factory=dict, description="per-source field mappings (spans:) and the "
                                    "remote sources the project names (remote: [URL, ...])")
    redaction: dict[str, Any] = Field(default_factory=dict)
    ingest: IngestLimits = Field(default_factory=IngestLimits, description="limits on one line of trace input")


class Project:
    """A project folder: its config, its data folder and its experiments folder."""

    def __init__(self, root: Path, config: ProjectConfig):
        self.root = root.resolve()
        self.config = config

    @classmethod
    def load(cls, root: str | Path = ".") -> "Project":
        folder = Path(root)
        path = folder / PROJECT_FILE
        if not path.exists():
            raise ProjectError(f"no {PROJECT_FILE} in {folder.resolve()}; run `improver init` there or pass --project")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ProjectError(f"{path}: not valid YAML: {error}") from error
        try:
            config = ProjectConfig.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ProjectError(f"{path}: {problems}") from error
        project = cls(folder, config)
        if not project.base_config_dir.is_dir():
            raise ProjectError(f"{path}: target.config folder {project.base_config_dir} does not exist")
        return project

    @property
    def data_dir(self) -> Path:
        folder = self.root / DATA_DIR
        folder.mkdir(exist_ok=True)
        return folder

    @property
    def store_path(self) -> Path:
        return self.data_dir / "traces.sqlite"

    @property
    def experiments_dir(self) -> Path:
        return self.root / self.config.experiments

    @property
    def base_config_dir(self) -> Path:
        return (self.root / self.config.target.config).resolve()

    @property
    def remote_sources(self) -> list[str]:
        """The remote trace sources improver.yaml names (``sources: {remote: [URL, ...]}``): the only
        URLs MCP clients may ingest and the only servers that receive a source's credential."""
        named = (self.config.sources or {}).get("remote") or []
        if isinstance(named, str):
            named = [named]
        if not isinstance(named, list) or not all(isinstance(url, str) and "://" in url for url in named):
            raise ProjectError(f"{self.root / PROJECT_FILE}: sources.remote must be a list of URLs, "
                               "e.g. [phoenix+https://phoenix.example:6006/my-project]")
        return named

    def untrusted_source(self, source: str) -> str:
        """The trace input an MCP client (possibly a prompt-injected agent) may ingest: a remote source
        named in improver.yaml, or a file or folder inside the project; anything else is refused."""
        if source in self.remote_sources:
            return source
        if URL.match(source):
            raise ProjectError(f"{source!r} is not one of the remote sources named in {self.root / PROJECT_FILE} "
                               f"(sources.remote: {self.remote_sources or 'none'}); add it there to let MCP clients "
                               "ingest it, or run `improver ingest` yourself")
        return str(self.inside(Path(source)))

    def inside(self, path: Path) -> Path:
        """``path`` resolved, or ProjectError when it points outside the project folder."""
        resolved = (self.root / path).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise ProjectError(f"{path} is outside the project folder {self.root}; use a path inside it")
        return resolved


def write_project_file(folder: Path, data: dict[str, Any]) -> Path:
    """Write an ``improver.yaml`` (used by `improver init` and the demo)."""
    ProjectConfig.model_validate(data)
    path = folder / PROJECT_FILE
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
