"""The bundled procurement example as a ready project: config, traces, improver.yaml."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

from improver.bundled import bundled
from improver.errors import ProjectError
from improver.project import write_project_file

MARKER = ".improver-demo"


def example_dir() -> Path:
    folder = bundled("examples") / "procurement"
    if not (folder / "agent.py").exists():
        raise ProjectError(f"the procurement example is missing from this installation ({folder} not found); "
                           "reinstall improver with `pip install agent-improver`")
    return folder


def make_demo_project(folder: Path, n: int = 130, seed: int = 7, tag_share: float = 0.8,
                      inconsistency: float = 0.05) -> Path:
    """A fresh demo project in ``folder`` (a previous demo there is replaced; anything else is refused)."""
    folder, source = folder.resolve(), example_dir()
    examples = source.parent
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise ProjectError(f"{folder} exists and is not an improver demo; pass --dir with a new folder")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by `improver demo`; safe to delete\n")
    shutil.copytree(source / "config", folder / "config")
    example = yaml.safe_load((source / "improver.yaml").read_text())
    example["target"]["python_path"] = str(examples)
    write_project_file(folder, example)
    if str(examples) not in sys.path:
        sys.path.insert(0, str(examples))
    from procurement.simulate import write_traces

    write_traces(folder / "traces.jsonl", n=n, seed=seed, tag_share=tag_share, inconsistency=inconsistency,
                 config_dir=folder / "config")
    return folder
