"""The async backend (``target.runner: async``): an ``async def decide(case, config_dir)``
target for I/O-bound agents (an LLM behind an API), with at most ``target.concurrency``
cases in flight and at most ``target.rate_limit`` cases started per second. Past
``target.max_error_share`` errors (an API that is down, a key that was revoked) the run
stops starting cases and fails, as the local backend's does, instead of calling on."""
from __future__ import annotations

import asyncio
import gc
import inspect
from pathlib import Path

from improver.errors import TargetError
from improver.project import TargetSpec
from improver.runners import ErrorBudget, Progress, _error, normalise
from improver.runners.local import load_callable

PROGRESS_EVERY = 50


class AsyncRunner:
    def __init__(self, spec: TargetSpec, root: Path):
        self.spec = spec
        self.decide, _batch = load_callable(spec, root)
        if not inspect.iscoroutinefunction(self.decide):
            raise TargetError(f"target.runner is 'async' but {spec.callable} is not an `async def`; "
                              "make decide a coroutine function or use target.runner: local")

    def run(self, cases: list[dict], config_dir: Path, progress: Progress | None = None) -> list[dict]:
        if not cases:
            return []
        paused = not gc.isenabled()  # a cycle pauses the collector for improver's own rows; the agent runs
        gc.enable()  # in this process, and its objects (clients, errors, futures) may hold cycles
        try:
            return asyncio.run(self._run(cases, config_dir, progress))
        finally:
            if paused:
                gc.disable()

    async def _run(self, cases: list[dict], config_dir: Path, progress: Progress | None) -> list[dict]:
        loop = asyncio.get_running_loop()
        interval = 1 / self.spec.rate_limit if self.spec.rate_limit else 0.0
        results: list[dict | None] = [None] * len(cases)
        pending = iter(range(len(cases)))
        budget = ErrorBudget(len(cases), self.spec.max_error_share)
        state = {"next_start": loop.time(), "unreported": 0}

        async def one(index: int) -> dict:
            if interval:  # evenly spaced starts: one every `interval` seconds across all workers
                start = max(loop.time(), state["next_start"])
                state["next_start"] = start + interval
                await asyncio.sleep(start - loop.time())
            try:
                return normalise(await asyncio.wait_for(self.decide(cases[index], config_dir), self.spec.timeout))
            except asyncio.TimeoutError:
                return _error(f"target took longer than target.timeout ({self.spec.timeout:g} s)")
            except Exception as error:
                return _error(f"{type(error).__name__}: {error}")

        async def worker() -> None:
            for index in pending:  # one shared iterator: each case is taken once
                results[index] = await one(index)
                budget.add(index, results[index])  # RunFailedError past the share: the cases in flight are cancelled
                state["unreported"] += 1
                if progress and state["unreported"] >= PROGRESS_EVERY:
                    progress(state["unreported"])
                    state["unreported"] = 0

        await asyncio.gather(*(worker() for _ in range(min(self.spec.concurrency, len(cases)))))
        if progress and state["unreported"]:
            progress(state["unreported"])
        return results  # type: ignore[return-value]
