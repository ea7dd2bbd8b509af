"""Typed errors. Every message says what went wrong and how to fix it."""
from __future__ import annotations


class ImproverError(Exception):
    """Base of improver's errors; the CLI and the MCP server show the message as is."""


class ProjectError(ImproverError):
    """The project folder or its improver.yaml is missing or malformed."""


class TraceError(ImproverError):
    """A trace file or source cannot be read at all (single bad lines are quarantined)."""


class StoreError(ImproverError):
    """The trace or graph store cannot be opened or written."""


class TargetError(ImproverError):
    """The target agent cannot be loaded or run."""


class ExperimentError(ImproverError):
    """An experiment id, folder or manifest is invalid."""


class MissingExtraError(ImproverError, ImportError):
    """An optional backend is used without its extra installed."""

    def __init__(self, feature: str, extra: str):
        super().__init__(f"{feature} needs the '{extra}' extra: pip install 'improver[{extra}]'")


def require(module: str, feature: str, extra: str):
    """Import an optional module, or raise MissingExtraError naming the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(feature, extra) from error
