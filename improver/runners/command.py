"""The command backend: a target command reading cases as JSONL on stdin, writing decisions on stdout.

The protocol is strict: one JSON object per case on stdout, in input order, nothing else
(blank lines aside; logs go to stderr). An object with ``error`` instead of ``decision``
records that case as an error with its reason. A line that is not a JSON object, or
more or fewer lines than cases from a command that exits 0, is a broken protocol:
the run stops with a ``TargetError`` naming the stdout line. Each answer must come
within ``target.timeout`` seconds of the one before (flush stdout per line if the
agent is slow); a command that runs over is killed, or that exits non-zero before
answering everything: the case in flight gets the error and a new command takes the
rest.
"""
from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from improver.errors import TargetError
from improver.project import TargetSpec
from improver.runners import ErrorBudget, Progress, _error, normalise

CHUNK = 5000
STARTUP = 300  # seconds a command may take before its first answer, on top of target.timeout


class CommandRunner:
    def __init__(self, spec: TargetSpec, root: Path):
        self.spec, self.root = spec, root
        self._running: set[subprocess.Popen] = set()

    def run(self, cases: list[dict], config_dir: Path, progress: Progress | None = None) -> list[dict]:
        budget = ErrorBudget(len(cases), self.spec.max_error_share)
        starts = range(0, len(cases), CHUNK)
        try:
            with ThreadPoolExecutor(max_workers=self.spec.workers) as pool:
                parts = pool.map(lambda s: self._run_chunk(s, cases[s:s + CHUNK], config_dir, budget, progress), starts)
                return [answer for part in list(parts) for answer in part]
        finally:
            for process in list(self._running):
                process.kill()

    def _run_chunk(self, start: int, cases: list[dict], config_dir: Path, budget: ErrorBudget, progress) -> list[dict]:
        answers: list[dict] = []
        while len(answers) < len(cases):
            first = len(answers)
            failure = self._invoke(start + first, cases[first:], config_dir, answers, budget, progress)
            if failure:
                answers.append(_error(failure))
                budget.add(start + len(answers) - 1, answers[-1])
                if progress:
                    progress(1)
        return answers

    def _invoke(self, start: int, cases: list[dict], config_dir: Path, answers: list[dict],
                budget: ErrorBudget, progress) -> str | None:
        """One command over ``cases``, answers appended; the reason if it failed on the case in flight."""
        argv = [part.replace("{config_dir}", str(config_dir)).replace("{python}", sys.executable)
                for part in self.spec.command]
        try:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       cwd=self.root, text=True, encoding="utf-8", errors="backslashreplace")
        except OSError as error:
            raise TargetError(f"cannot run target command {argv[0]!r}: {error}; check target.command in improver.yaml") from error
        self._running.add(process)
        lines: queue.Queue = queue.Queue()
        stderr: list[str] = []
        threading.Thread(target=_feed, args=(process, cases), daemon=True).start()
        threading.Thread(target=_drain, args=(process.stdout, lines.put), daemon=True).start()
        threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True).start()
        try:
            expected, number = len(cases), 0
            deadline = time.monotonic() + self.spec.timeout + STARTUP
            while True:
                try:
                    line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    process.kill()
                    return f"timed out after {self.spec.timeout:g} s (target.timeout in improver.yaml)"
                if line is None:
                    break
                number += 1
                if not line.strip():
                    continue
                where = f"target command {argv[0]!r} broke the protocol at stdout line {number}"
                try:
                    row = json.loads(line)
                except ValueError:
                    row = None
                if not isinstance(row, dict):
                    raise TargetError(f"{where}: {line.strip()[:120]!r} is not a JSON object. Write exactly one JSON "
                                      "decision per case to stdout, in input order, and send logs to stderr")
                if expected == 0:
                    raise TargetError(f"{where}: more lines than the {len(cases)} cases it was given")
                answers.append(normalise(row))
                budget.add(start + len(cases) - expected, answers[-1])
                expected -= 1
                if progress:
                    progress(1)
                deadline = time.monotonic() + self.spec.timeout
            code = process.wait()
            if expected and code == 0:
                raise TargetError(f"target command {argv[0]!r} exited 0 after {len(cases) - expected} answers for "
                                  f"{len(cases)} cases; it must write one JSON line per case")
            if expected:
                tail = "".join(stderr).strip()[-300:] if _settle(stderr) else ""
                return f"target command exited with code {code} on this case" + (f": {tail}" if tail else "")
            return None
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            self._running.discard(process)


def _feed(process: subprocess.Popen, cases: list[dict]) -> None:
    try:
        for case in cases:
            process.stdin.write(json.dumps(case, default=str) + "\n")
        process.stdin.close()
    except (BrokenPipeError, OSError, ValueError):  # the command stopped reading: its exit says why
        pass


def _drain(stream, put) -> None:
    try:
        for line in stream:
            put(line)
    except (OSError, ValueError):
        pass
    put(None)


def _settle(stderr: list[str], wait: float = 1.0) -> bool:
    """Give the stderr reader a moment to finish after the command exited."""
    end = time.monotonic() + wait
    while not stderr and time.monotonic() < end:
        time.sleep(0.01)
    return bool(stderr)
