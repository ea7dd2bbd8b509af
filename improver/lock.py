"""One writer per project: a file lock in ``.improver/write.lock`` around every stage that writes.

Ingest, runs, scores, new experiments and whole cycles take it; readers (log, diff, graph
summary, MCP read tools) never do. It is re-entrant within a process, so a cycle holds
it once for all its stages. A second writer waits up to ``wait`` seconds (saying who
holds the lock), then stops with ``ProjectBusyError``; the operating system releases
the lock when its holder dies, even by ``kill -9``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from filelock import FileLock, Timeout

from improver.errors import ProjectBusyError


class ProjectLock:
    def __init__(self, data_dir: Path, wait: float = 0, notice: Callable[[str], None] | None = None):
        self.path, self.wait, self.notice = data_dir / "write.lock", wait, notice
        self.holder = data_dir / "write.lock.json"
        self._lock = FileLock(self.path, thread_local=False)

    @contextmanager
    def __call__(self, what: str):
        """Hold the lock for ``what`` (e.g. "improver cycle"); re-entrant."""
        if self._lock.is_locked:  # this process holds it already
            with self._lock:
                yield
            return
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            holder = self.describe()
            if self.wait <= 0:
                raise ProjectBusyError(f"another improver command is writing to this project ({holder}); "
                                       "wait for it to finish, or pass --wait SECONDS to wait for it") from None
            if self.notice:
                self.notice(f"waiting up to {self.wait:g} s for the other writer ({holder}) …")
            try:
                self._lock.acquire(timeout=self.wait)
            except Timeout:
                raise ProjectBusyError(f"another improver command is still writing to this project after "
                                       f"{self.wait:g} s ({self.describe()}); try again later or raise --wait") from None
        try:
            self.holder.write_text(json.dumps({"pid": os.getpid(), "what": what, "since": time.time(),
                                               "argv": sys.argv[:4]}), encoding="utf-8")
            yield
        finally:
            self._lock.release()

    def describe(self) -> str:
        try:
            info = json.loads(self.holder.read_text(encoding="utf-8"))
            return f"pid {info['pid']}: {info['what']}, for {time.time() - info['since']:.0f} s"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"
