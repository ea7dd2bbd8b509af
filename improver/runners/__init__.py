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

from improver.errors import RunFailedError
from improver.project import Project

ERROR = "error"
FIRST_ERRORS = 3  # errors shown when a run fails
Progress = Callable[[int], None]
Answered = Callable[[int, int, list[dict]], None]  # (job, index of the first case, answers) as a slice is answered


class TargetRunner(Protocol):
    """Decides cases with a config folder: one answer per case, in order (``normalise``d, or an
    ``error`` decision with its reason). ``progress`` is called with the number of cases just
    answered. Past ``target.max_error_share`` errors a runner may stop early with ``RunFailedError``."""

    def run(self, cases: list[dict], config_dir: Path, progress: Progress | None = None) -> list[dict]: ...


def run_many(runner: TargetRunner, jobs: list[tuple[list[dict], Path]], progress: Progress | None = None,
             answered: Answered | None = None) -> list[list[dict]]:
    """Several runs, each ``(cases, config_dir)``, through one runner: as one batch where the backend
    has ``run_many`` (the local pool, the cache), else one after another. Each job's answers are what
    ``runner.run`` gives it alone. ``answered`` gets every answer once: slice by slice as they come from
    a backend that streams them (``streams``; the local pool, the cache), so the caller's work on them
    overlaps the target's, else each job's whole list at the end."""
    many = getattr(runner, "run_many", None)
    if many is not None and getattr(runner, "streams", False):
        return many(jobs, progress, answered)
    results = many(jobs, progress) if many is not None else [runner.run(cases, config_dir, progress) for cases, config_dir in jobs]
    for job, answers in enumerate(results if answered else []):
        answered(job, 0, answers)
    return results


def _error(message: str) -> dict:
    return {"decision": ERROR, "confidence": None, "reasoning": "", "cited": [], "error": _text(message)[:500]}


def _text(value: object) -> str:
    """``value`` as text that can be written as UTF-8 (lone surrogates become escapes)."""
    text = value if isinstance(value, str) else str(value)
    if text.isascii():  # no lone surrogates: as it is (most answers; the round trip below costs ~9 us an answer)
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def normalise(result: object) -> dict:
    """A decision dict with the contract's keys as plain JSON values, or an error decision saying what was wrong.
    An answer of plain ASCII strings (most answers) is taken as it is, without a call per value."""
    if type(result) is dict:
        decision, confidence = result.get("decision"), result.get("confidence")
        reasoning, cited = result.get("reasoning") or "", result.get("cited") or []
        if type(decision) is str and type(reasoning) is str and type(cited) is list \
                and (confidence is None or type(confidence) in (str, int, float)):
            try:
                citations = "".join(cited)  # TypeError unless every citation is a string
            except TypeError:
                citations = None
            if citations is not None and decision.strip() \
                    and (decision + reasoning + citations + (confidence if type(confidence) is str else "")).isascii():
                return {"decision": decision, "confidence": confidence, "reasoning": reasoning, "cited": list(cited)}
    return _normalised(result)


def _normalised(result: object) -> dict:
    """``normalise`` value by value: any answer."""
    if not isinstance(result, dict) or not isinstance(result.get("decision"), str) or not result["decision"].strip():
        if isinstance(result, dict) and result.get("error"):
            return _error(f"target reported an error: {_text(result['error'])}")
        return _error(f"target returned {type(result).__name__} without a 'decision' string")
    confidence = result.get("confidence")
    if confidence is not None and not isinstance(confidence, (str, int, float)) or isinstance(confidence, bool):
        confidence = _text(confidence)
    cited = result.get("cited") or []
    cited = [cited] if isinstance(cited, (str, bytes)) else cited
    try:
        cited = [_text(c) for c in cited]
    except TypeError:
        cited = [_text(cited)]
    return {"decision": _text(result["decision"]), "confidence": _text(confidence) if isinstance(confidence, str) else confidence,
            "reasoning": _text(result.get("reasoning") or ""), "cited": cited}


class ErrorBudget:
    """Counts a run's errors; raises ``RunFailedError`` once they pass ``share`` of ``total`` cases and
    number more than ``MIN_ERRORS`` (a share of a handful of cases, as a leave-one-out rerun of the few
    sessions one rule matches, says little), and at the end of a run whose every case failed."""

    MIN_ERRORS = 5

    def __init__(self, total: int, share: float):
        self.total, self.share, self.errors, self.first = total, share, 0, []

    def add(self, index: int, answer: dict) -> None:
        if answer["decision"] != ERROR:
            return
        self.errors += 1
        if len(self.first) < FIRST_ERRORS:
            self.first.append((index, answer.get("error", "")))
        if self.errors > self.share * self.total and self.errors > self.MIN_ERRORS:
            raise RunFailedError(self.errors, self.total, self.share, self.first)

    def add_all(self, start: int, answers: list[dict]) -> None:
        """``add`` of answers to the cases ``start``, ``start + 1``, …: one pass to find the errors."""
        for offset in [k for k, answer in enumerate(answers) if answer["decision"] == ERROR]:
            self.add(start + offset, answers[offset])

    @classmethod
    def check(cls, answers: list[dict], share: float, of: int | None = None) -> None:
        """Raise past the share of ``answers`` (or of ``of`` cases, when these are a rerun of a few of them)."""
        budget = cls(of or len(answers), share)
        budget.add_all(0, answers)
        if of is None and answers and budget.errors == len(answers) and share < 1:
            raise RunFailedError(budget.errors, budget.total, share, budget.first)


def runner_for(project: Project, pool: TargetRunner | None = None) -> TargetRunner:
    """The backend ``target.runner`` names, wrapped in the decision cache unless ``target.cache`` is off.
    With ``pool`` (a runner of the same target), a backend that can share its worker processes does."""
    spec = project.config.target
    inner = getattr(pool, "inner", pool)
    if inner is not None and hasattr(inner, "sharing") and (spec.callable, spec.python_path, spec.runner) == \
            (inner.spec.callable, inner.spec.python_path, inner.spec.runner) and not spec.command:
        return _cached(project, inner.sharing(spec), getattr(pool, "case_keys", None))
    if spec.command:
        from improver.runners.command import CommandRunner as Backend
    elif spec.runner == "async":
        from improver.runners.aio import AsyncRunner as Backend
    elif spec.runner == "ray":
        from improver.runners.ray import RayRunner as Backend
    else:
        from improver.runners.local import CallableRunner as Backend
    return _cached(project, Backend(spec, project.root))


def _cached(project: Project, runner: TargetRunner, case_keys: dict | None = None) -> TargetRunner:
    spec = project.config.target
    if not spec.cache:
        return runner
    from improver.runners.cache import CachedRunner, DecisionCache, fingerprint

    cache = DecisionCache(project.data_dir / "decisions.sqlite", spec.cache_max_mb * 2**20)
    return CachedRunner(runner, cache, fingerprint(spec, project.root), case_keys)
