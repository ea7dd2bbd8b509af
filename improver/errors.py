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


class RunFailedError(TargetError):
    """Too many cases of a run errored: the run is not recorded, so a later run retries it."""

    def __init__(self, errors: int, total: int, share: float, first: list[tuple[int, str]],
                 names: list[str] | None = None):
        self.errors, self.total, self.share, self.first = errors, total, share, first
        shown = "; ".join(f"{names[i] if names else f'case {i + 1}'}: {why}" for i, why in first)
        super().__init__(f"the target failed on {errors} of {total} cases, more than target.max_error_share "
                         f"({share:.0%}); nothing was recorded. First errors: {shown}. Fix the agent (or raise "
                         "target.max_error_share / target.timeout in improver.yaml) and run again")

    def named(self, names: list[str]) -> "RunFailedError":
        """The same error with cases named (e.g. by session id) instead of by position."""
        return RunFailedError(self.errors, self.total, self.share, self.first, names)


class ProjectBusyError(ImproverError):
    """Another improver command is writing to the project (one writer at a time)."""


class ExperimentError(ImproverError):
    """An experiment id, folder or manifest is invalid."""


class MissingExtraError(ImproverError, ImportError):
    """An optional backend is used without its extra installed."""

    def __init__(self, feature: str, extra: str):
        super().__init__(f"{feature} needs the '{extra}' extra: pip install 'agent-improver[{extra}]'")


def require(module: str, feature: str, extra: str):
    """Import an optional module, or raise MissingExtraError naming the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(feature, extra) from error
