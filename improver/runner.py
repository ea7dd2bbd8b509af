"""Run the target agent on cases with a given config folder (DESIGN.md target contract).

Two kinds of target: a Python callable ``decide(case, config_dir) -> dict`` named as
``module:function`` (if its module also has ``decide_batch(cases, config_dir)``, that
is used on chunks), or a command that reads cases as JSONL on stdin and writes one
decision per line on stdout. Large runs are split across worker processes. A case on
which the target raises or answers nonsense gets an ``error`` decision; the run goes on.
"""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Protocol

from improver.errors import TargetError
from improver.project import Project, TargetSpec

ERROR = "error"
CHUNK = 1000
PARALLEL_FROM = 2000
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


def load_callable(spec: TargetSpec, root: Path):
    """The target function (and its batch form, if any) named by ``module:function``."""
    if spec.python_path:
        path = str((root / spec.python_path).resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module_name, function_name = spec.callable.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise TargetError(f"cannot import target module {module_name!r} ({type(error).__name__}: {error}); "
                          "check target.callable and target.python_path in improver.yaml") from error
    function = getattr(module, function_name, None)
    if not callable(function):
        raise TargetError(f"{module_name} has no callable {function_name!r}; check target.callable in improver.yaml")
    return function, getattr(module, f"{function_name}_batch", None)


def _decide_chunk(spec: TargetSpec, root: Path, cases: list[dict], config_dir: Path) -> list[dict]:
    decide, decide_batch = load_callable(spec, root)
    if decide_batch is not None:
        try:
            results = decide_batch(cases, config_dir)
            if isinstance(results, list) and len(results) == len(cases):
                return [normalise(r) for r in results]
        except Exception:  # fall back to one case at a time to isolate the failing cases
            pass
    out = []
    for case in cases:
        try:
            out.append(normalise(decide(case, config_dir)))
        except Exception as error:
            out.append(_error(f"{type(error).__name__}: {error}"))
    return out


class CallableRunner:
    def __init__(self, spec: TargetSpec, root: Path):
        self.spec, self.root = spec, root
        self._pool: ProcessPoolExecutor | None = None  # started on the first large run, then reused
        load_callable(spec, root)  # fail early with a clear error

    def run(self, cases: list[dict], config_dir: Path, progress: Progress | None = None) -> list[dict]:
        chunks = [cases[i:i + CHUNK] for i in range(0, len(cases), CHUNK)]
        results: list[dict] = []
        if self.spec.workers > 1 and len(cases) >= PARALLEL_FROM:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=self.spec.workers)
            futures = [self._pool.submit(_decide_chunk, self.spec, self.root, chunk, config_dir) for chunk in chunks]
            for future in futures:
                part = future.result()
                results += part
                if progress:
                    progress(len(part))
        else:
            for chunk in chunks:
                part = _decide_chunk(self.spec, self.root, chunk, config_dir)
                results += part
                if progress:
                    progress(len(part))
        return results


class CommandRunner:
    def __init__(self, spec: TargetSpec, root: Path):
        self.spec, self.root = spec, root

    def _run_chunk(self, cases: list[dict], config_dir: Path) -> list[dict]:
        argv = [part.replace("{config_dir}", str(config_dir)) for part in self.spec.command]
        payload = "".join(json.dumps(c) + "\n" for c in cases)
        try:
            done = subprocess.run(argv, input=payload, capture_output=True, text=True, cwd=self.root, timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise TargetError(f"cannot run target command {argv[0]!r}: {error}; check target.command in improver.yaml") from error
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        if done.returncode != 0 or len(lines) != len(cases):
            why = f"target command exited {done.returncode} with {len(lines)} lines for {len(cases)} cases: {done.stderr[-300:]}"
            return [_error(why) for _ in cases]
        out = []
        for line in lines:
            try:
                out.append(normalise(json.loads(line)))
            except json.JSONDecodeError:
                out.append(_error(f"target wrote a line that is not JSON: {line[:100]}"))
        return out

    def run(self, cases: list[dict], config_dir: Path, progress: Progress | None = None) -> list[dict]:
        chunks = [cases[i:i + CHUNK * 5] for i in range(0, len(cases), CHUNK * 5)]
        results: list[dict] = []
        with ThreadPoolExecutor(max_workers=self.spec.workers) as pool:
            for part in pool.map(lambda c: self._run_chunk(c, config_dir), chunks):
                results += part
                if progress:
                    progress(len(part))
        return results


def runner_for(project: Project) -> TargetRunner:
    spec = project.config.target
    return CallableRunner(spec, project.root) if spec.callable else CommandRunner(spec, project.root)
