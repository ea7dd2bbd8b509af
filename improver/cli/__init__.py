"""The ``improver`` command line: thin command groups over ``Workspace``; errors become messages.

``app.py`` holds the Typer app and what the groups share; each other module is one
command group that imports ``app.py`` and never another group.
"""
# Each group registers its commands on import; `improver --help` lists them in this order.
# One import a line, so that groups added side by side do not collide.
from improver.cli import init  # noqa: F401
from improver.cli import loop  # noqa: F401
from improver.cli import quarantine  # noqa: F401
from improver.cli import review  # noqa: F401
from improver.cli import check  # noqa: F401
from improver.cli import queue  # noqa: F401
from improver.cli import report  # noqa: F401
from improver.cli import push  # noqa: F401
from improver.cli import claude  # noqa: F401
from improver.cli import graph  # noqa: F401
from improver.cli import sources  # noqa: F401
from improver.cli.app import app, main

__all__ = ["app", "main"]
