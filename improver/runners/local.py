"""The local backend: a Python callable target, in process or over a process pool for large runs."""
from __future__ import annotations

import importlib
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from improver.errors import TargetError
from improver.project import TargetSpec
from improver.runners import Progress, _error, normalise

CHUNK = 1000
PARALLEL_FROM = 2000


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
