"""Fixtures for the PR review tests: a scored demo project inside a real git repo with a bare remote."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from improver.cycle import run_cycles
from improver.demo import make_demo_project
from improver.workspace import Workspace

GIT = shutil.which("git")


def git(repo: Path, *args: str) -> str:
    return subprocess.run([GIT, "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="session")
def scored_project(tmp_path_factory) -> Path:
    """A demo project after one cycle: baseline, cycle and gated experiments, all scored (built once)."""
    folder = make_demo_project(tmp_path_factory.mktemp("pr-demo") / "p", n=60, seed=7)
    ws = Workspace(folder)
    ws.ingest(str(folder / "traces.jsonl"))
    run_cycles(ws, max_cycles=1)
    return folder


@pytest.fixture
def git_env(monkeypatch, tmp_path):
    """A git with a known identity, no user or system config, and a PATH holding git only (no gh)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(GIT)
    monkeypatch.setenv("PATH", str(bin_dir))
    for name, value in {"GIT_AUTHOR_NAME": "Reviewer", "GIT_AUTHOR_EMAIL": "reviewer@example.com",
                        "GIT_COMMITTER_NAME": "Reviewer", "GIT_COMMITTER_EMAIL": "reviewer@example.com",
                        "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}.items():
        monkeypatch.setenv(name, value)
    return bin_dir


@pytest.fixture
def repo(scored_project, tmp_path, git_env) -> Path:
    """A copy of the scored project as a git repo on ``main`` (config committed) with a bare ``origin``."""
    folder = tmp_path / "project"
    shutil.copytree(scored_project, folder)
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", "config", "improver.yaml")
    git(folder, "commit", "-q", "-m", "target config")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(folder, "remote", "add", "origin", str(remote))
    return folder


def snapshot(repo: Path) -> dict:
    """Everything about a repo that `improver pr` must leave alone when it refuses."""
    return {"head": git(repo, "rev-parse", "HEAD"), "branch": git(repo, "symbolic-ref", "HEAD"),
            "branches": git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"),
            "status": git(repo, "status", "--porcelain", "--untracked-files=all"), "index": git(repo, "ls-files", "-s")}


@pytest.fixture
def project(scored_project, tmp_path) -> Path:
    """A private copy of the scored demo project (no git)."""
    return Path(shutil.copytree(scored_project, tmp_path / "project"))
