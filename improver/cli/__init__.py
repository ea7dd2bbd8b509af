"""The ``improver`` command line: thin command groups over ``Workspace``; errors become messages.

``app.py`` holds the Typer app and what the groups share; each other module is one
command group that imports ``app.py`` and never another group.
"""
from improver.cli import loop, review, claude, graph, report, check  # noqa: F401  (each registers its commands)
from improver.cli.app import app, main

__all__ = ["app", "main"]
