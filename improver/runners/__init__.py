"""Run the target agent on cases with a given config folder (DESIGN.md target contract).

Two kinds of target: a Python callable ``decide(case, config_dir) -> dict`` named as
``module:function`` (if its module also has ``decide_batch(cases, config_dir)``, that
is used on chunks), or a command that reads cases as JSONL on stdin and writes one
decision per line on stdout. Each way of running a target is one backend a file in
this package behind the ``TargetRunner`` contract, chosen by ``target.runner``:
``local`` (callables, a process pool for large runs), ``async`` (an ``async def``
target, concurrency and a rate limit), ``ray`` (tasks on a Ray cluster) and
``command``; the decision cache (``cache``) wraps any of them. A case on which the
target raises or answers nonsense gets an ``error`` decision; the run goes on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

from improver.project import Project

ERROR = "error"
Progress = Callable[[int], None]


class TargetRunner(Protocol):
    def run(self, cases: list[dict], config_dir: Path, progress: Progress | None = None) -> list[dict]: ...


def _error(message: str) -> dict:
    return {"decision": ERROR, "confidence": None, "reasoning": "", "cited": [], "error": message[:500]}


def normalise(result: object) -> dict:
    """A decision dict with the contract's keys, or an error decision saying what was wrong."""
    if not isinstance(result, dict) or not isinstance(result.get("decision"), str) or not result["decision"]:
        return _error(f"target returned {type(result).__name__} without a 'decision' string")
    return {"decision": result["decision"], "confidence": result.get("confidence"),
            "reasoning": str(result.get("reasoning") or ""), "cited": list(result.get("cited") or [])}


def runner_for(project: Project) -> TargetRunner:
    """The backend ``target.runner`` names, wrapped in the decision cache unless ``target.cache`` is off."""
    spec = project.config.target
    if spec.command:
        from improver.runners.command import CommandRunner as Backend
    elif spec.runner == "async":
        from improver.runners.aio import AsyncRunner as Backend
    elif spec.runner == "ray":
        from improver.runners.ray import RayRunner as Backend
    else:
        from improver.runners.local import CallableRunner as Backend
    runner = Backend(spec, project.root)
    if not spec.cache:
        return runner
    from improver.runners.cache import CachedRunner, DecisionCache, fingerprint

    return CachedRunner(runner, DecisionCache(project.data_dir / "decisions.sqlite"), fingerprint(spec, project.root))
