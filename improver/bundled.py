"""Where the files that ship with improver are: the examples and the Claude Code skills.

A wheel carries them as package data (improver/examples, improver/skills, see setup.py); a clone
keeps them at the repository's top.
"""
from __future__ import annotations

from pathlib import Path

from improver.errors import ProjectError

PACKAGE = Path(__file__).resolve().parent


def bundled(name: str) -> Path:
    """The folder ``name`` (``examples`` or ``skills``) of this installation."""
    for folder in (PACKAGE / name, PACKAGE.parent / name):
        if folder.is_dir():
            return folder
    raise ProjectError(f"this installation of improver has no {name}/ folder (looked in {PACKAGE}); "
                       "reinstall it with `pip install agent-improver`")
