"""The local backend: a Python callable target, run in supervised worker processes.

The target runs isolated from improver's own LangGraph runtime: each worker is a fresh
interpreter (``python -c WORKER``, never forked from inside a cycle's
node, so no inherited checkpointer, connections, locks or context; the caller's main
module is not re-imported), and every call runs in a fresh ``contextvars.Context``. The parent hands each worker a chunk at a time and enforces
the execution contract:

- ``decide`` runs case by case and reports each answer, so every case has its own
  deadline (``target.timeout``); a ``decide_batch`` call has the same deadline for its
  whole chunk, and a chunk whose batch call fails, hangs or kills the worker is
  retried case by case to find the case that did it;
- a case that raises, calls ``sys.exit``, hangs (the worker is killed) or kills its
  worker (``os._exit``, a segfault) gets an ``error`` decision naming what happened,
  and a new worker takes over the rest;
- past ``target.max_error_share`` errors the run stops with ``RunFailedError``;
- workers exit when the parent dies (parent-death signal on Linux, and a watchdog).

A run starts another worker (up to ``target.workers``) only when it pays: when the cases
left would keep the running workers busy for twice what a worker takes to import the target
(both measured), or the run has already lasted that long. A cycle starts them all while it
mines (``prepare``): this process keeps one core busy then, and the others are idle.
"""
from __future__ import annotations

import contextvars
import gc
import importlib
import signal
import subprocess
import sys
import time
import weakref
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path

import orjson

from improver import worker_process
from improver.errors import TargetError
from improver.project import TargetSpec
from improver.runners import Answered, ErrorBudget, Progress, _error, normalise

CHUNK = 1000
PARALLEL_FROM = 2000  # fewer cases than this run on one worker
STARTUP = 300  # seconds a new worker may take to import the target, before its first deadline
PAYS_AFTER = 2  # another worker starts when the cases left would take this many of its start-ups
PACE_SAMPLE = 20  # cases answered one by one before their mean counts as a worker's pace


def load_callable(spec: TargetSpec, root: Path):
    """The target function (and its batch form, if any) named by ``module:function``; the
    project folder and ``target.python_path`` go first on ``sys.path``."""
    for folder in [root] + ([root / spec.python_path] if spec.python_path else []):
        path = str(folder.resolve())
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
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


# --------------------------------------------------------------------------- in the worker

def _call(function, *args) -> tuple[bool, object]:
    """(True, value) or (False, why): one call of the target in a fresh context."""
    try:
        return True, contextvars.Context().run(function, *args)
    except SystemExit as error:
        return False, f"the target called sys.exit({error.code!r})"
    except Exception as error:
        return False, f"{type(error).__name__}: {error}"


WORKER = worker_process.script("improver.runners.local:_serve")


def _serve() -> None:
    """A worker's loop: chunks in; answers out, one message per case or one per batch call.

    Runs in a fresh interpreter started with ``WORKER``: the protocol uses the original stdin
    and stdout; the target's own prints go to stderr."""
    inbox, outbox = worker_process.parent_connections()
    spec, root, path = inbox.recv()
    sys.path += [entry for entry in path if entry not in sys.path]
    try:
        decide, decide_batch = load_callable(TargetSpec.model_validate(spec), Path(root))
    except TargetError as error:
        outbox.send(("load_error", str(error)))
        return
    gc.freeze()  # what loading the target made stays: the collector's passes walk only what a chunk makes
    outbox.send(("ready", decide_batch is not None))
    while True:
        try:
            cases, config_dir, batch = inbox.recv()
        except (EOFError, OSError):
            return
        if type(cases) is bytes:  # sent as JSON (``_packed``)
            cases = orjson.loads(cases)
        for message in _answers(decide, decide_batch if batch else None, cases, config_dir):
            outbox.send(message)


def _answers(decide, decide_batch, cases: list[dict], config_dir):
    """``("batch", answers)`` from one batch call, or ``("case", answer)`` per case then ``("done", None)``."""
    if decide_batch is not None:
        ok, results = _call(decide_batch, cases, config_dir)
        if ok and isinstance(results, list) and len(results) == len(cases):
            yield "batch", _sharing_text([normalise(r) for r in results])
            return
    for case in cases:  # one at a time: isolates the failing cases
        ok, result = _call(decide, case, config_dir)
        yield "case", normalise(result) if ok else _error(result)
    yield "done", None


def _sharing_text(answers: list[dict]) -> list[dict]:
    """The answers with equal texts as one string object: a batch's answers mostly repeat a few
    reasonings and citations, and a message pickles each object once, so the parent reads (and
    keeps) one copy of each instead of one per case."""
    seen: dict[str, str] = {}
    for answer in answers:
        answer["reasoning"] = seen.setdefault(answer["reasoning"], answer["reasoning"])
        answer["cited"] = [seen.setdefault(c, c) for c in answer["cited"]]
    return answers


def _decide_chunk(spec: TargetSpec, root: Path, cases: list[dict], config_dir: Path) -> list[dict]:
    """A chunk decided in this process, each call in a fresh context (what Ray's tasks run)."""
    decide, decide_batch = load_callable(spec, root)
    answers: list[dict] = []
    for kind, value in _answers(decide, decide_batch, cases, config_dir):
        answers += value if kind == "batch" else [value] if kind == "case" else []
    return answers


# --------------------------------------------------------------------------- in the parent

def _death(worker) -> str:
    try:
        exitcode = worker.process.wait(5)
    except subprocess.TimeoutExpired:
        exitcode = None
    if exitcode is not None and exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    else:
        how = f"exited with code {exitcode} (os._exit or a crash in the target)"
    return f"the target's worker process {how} on this case"


class _Task:
    """A slice of one job's cases: ``start`` is its first case's index in the job; ``done`` counts answers."""

    def __init__(self, start: int, cases: list[dict], batch: bool, job: int = 0):
        self.start, self.cases, self.batch, self.done, self.job = start, cases, batch, 0, job


class _Answers:
    """One job's answers as they come: kept in order, counted against its error budget, reported."""

    def __init__(self, job: int, cases: int, share: float, progress: Progress | None, answered: Answered | None):
        self.job, self.progress, self.answered = job, progress, answered
        self.results: list[dict | None] = [None] * cases
        self.budget = ErrorBudget(cases, share)

    def record(self, start: int, answers: list[dict]) -> None:
        self.results[start:start + len(answers)] = answers
        self.budget.add_all(start, answers)
        if self.progress:
            self.progress(len(answers))
        if self.answered:
            self.answered(self.job, start, answers)


class _Pace:
    """What the workers of one pool were measured to take: to import the target, and a case."""

    def __init__(self):
        self.startup: float | None = None  # seconds from starting a worker to its "ready"
        self.per_case: float | None = None  # seconds a case: a batch's mean, or a task's over PACE_SAMPLE cases or more


class _Worker:
    """One worker process and the task it is on."""

    def __init__(self, spec: TargetSpec, root: Path):
        self.spawned = self.since = time.monotonic()  # ``since``: when it began on what it is answering
        self.process, self.conn, self._send = worker_process.start(WORKER, cwd=root, widen=_widen)
        self._send.send((spec.model_dump(), str(root), sys.path))
        self.ready = False  # the target is imported
        self.has_batch = False
        self.task: _Task | None = None  # the task it is on
        self.queued: deque[_Task] = deque()  # sent after it, to start on as soon as it is done
        self.deadline = 0.0

    def can_take(self) -> bool:
        """Idle; or on a batch with nothing queued, so a next batch waits in its pipe and the worker
        goes on without waiting for the parent to read its answers and send more."""
        return self.task is None or (self.ready and self.has_batch and self.task.batch and not self.queued)

    def give(self, task: _Task, config_dir: Path, timeout: float) -> None:
        task.batch = task.batch and (self.has_batch or not self.ready)
        self._send.send((_packed(task.cases), str(config_dir), task.batch))
        if self.task is None:
            self.task, self.since = task, time.monotonic()
            self.deadline = time.monotonic() + timeout + (0 if self.ready else STARTUP)
        else:
            self.queued.append(task)

    def done(self, timeout: float) -> None:
        """The task it was on is answered: on to the next one sent, with its own deadline."""
        self.task = self.queued.popleft() if self.queued else None
        self.since = time.monotonic()
        self.deadline = self.since + timeout

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.conn.close()
        self._send.close()


# orjson's own conversions of values JSON has no type for (a date, a dataclass, a str subclass) are
# refused, so such cases go pickled, as they are.
_PLAIN_JSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _packed(cases: list[dict]) -> bytes | list[dict]:
    """A chunk's cases for the pipe: as JSON bytes when they are plain JSON (improver keeps cases as
    JSON, so they are; orjson writes them ~5x faster than pickle, and the worker reads them as fast),
    else the list itself, pickled with the message."""
    try:
        return orjson.dumps(cases, option=_PLAIN_JSON)
    except TypeError:
        return cases


PIPE_BYTES = 1 << 20  # a chunk of 1000 cases pickles to ~300 KB: sent whole, not 64 KB at a time


def _widen(fd: int) -> None:
    """Make a pipe hold PIPE_BYTES (Linux), so handing a chunk to one worker does not wait until
    that worker has read it while another worker waits for its next chunk; elsewhere, as it is."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (ImportError, OSError):  # not Linux, or above /proc/sys/fs/pipe-max-size: the default size works
        pass


def _stop_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.stop()
    workers.clear()


class CallableRunner:
    """Runs a ``module:function`` target in supervised worker processes (reused across runs)."""

    streams = True  # ``run_many`` reports each slice of answers as it comes

    def __init__(self, spec: TargetSpec, root: Path):
        self.spec, self.root = spec, root
        self._workers: list[_Worker] = []
        self._pace = _Pace()
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)

    def close(self) -> None:
        """Stop the worker processes (they also stop with this runner or with the parent)."""
        self._finalizer()

    def sharing(self, spec: TargetSpec) -> "CallableRunner":
        """A runner with another spec (its error share, its timeout) on this one's worker processes:
        the same target, so no second pool has to start and import it. Closing either stops both."""
        other = CallableRunner.__new__(CallableRunner)
        other.spec, other.root, other._workers, other._finalizer = spec, self.root, self._workers, self._finalizer
        other._pace = self._pace
        return other

    def start(self, config_dir: Path, cases: int) -> None:
        """Start a worker without waiting for it: it imports the target while the caller goes on (a cycle
        reads its sessions meanwhile), on the core the caller leaves; a run then hands it work, and starts
        more when they pay (``_pays``), however many ``cases`` it will be."""
        if not self._workers:
            self._start()

    def prepare(self, cases: int) -> None:
        """Start every worker a run of ``cases`` cases can use, without waiting for them: for a caller about
        to keep one core busy a while (a cycle mining), so their imports take the others."""
        while len(self._workers) < self._wanted(cases):
            self._start()

    def _wanted(self, cases: int) -> int:
        return self.spec.workers if cases >= PARALLEL_FROM else 1

    def _pays(self, queue: deque, started: float) -> bool:
        """Whether starting another worker would help this run: it imports the target for ``startup``
        seconds before deciding anything (and takes a core meanwhile), so only when the cases left would
        keep the running workers busy for PAYS_AFTER start-ups, or, with no pace measured yet, when the
        run has already lasted that long."""
        pace = self._pace
        if not self._workers:
            return True
        if pace.startup is None:  # none ready yet: wait to see what a start-up costs
            return False
        if pace.per_case is not None:
            left = sum(len(task.cases) - task.done for task in queue)
            return left * pace.per_case / len(self._workers) > PAYS_AFTER * pace.startup
        return time.monotonic() - started > PAYS_AFTER * pace.startup

    def run(self, cases: list[dict], config_dir: Path, progress: Progress | None = None) -> list[dict]:
        return self.run_many([(cases, config_dir)], progress)[0]

    def run_many(self, jobs: list[tuple[list[dict], Path]], progress: Progress | None = None,
                 answered: Answered | None = None) -> list[list[dict]]:
        """Several runs, each cases with its config folder, as one: their chunks share the workers
        (a rerun of a few cases under each of many configs keeps every worker busy). The answers
        of each job, in order, are what ``run`` gives it alone; each job has its own error budget.
        ``answered`` gets each slice of answers as it comes, while the workers go on."""
        queue = deque(_Task(i, cases[i:i + CHUNK], batch=True, job=j)
                      for j, (cases, _config) in enumerate(jobs) for i in range(0, len(cases), CHUNK))
        wanted, started = self._wanted(sum(len(cases) for cases, _ in jobs)), time.monotonic()
        found = [_Answers(j, len(cases), self.spec.max_error_share, progress, answered) for j, (cases, _) in enumerate(jobs)]
        try:
            while queue or any(w.task for w in self._workers):
                for worker in [w for w in self._workers if w.task is None]:
                    if worker.process.poll() is not None:  # died while idle
                        self._retire(worker)
                while queue:
                    worker = next((w for w in self._workers if w.task is None), None)
                    if worker is None:
                        worker = self._start() if len(self._workers) < wanted and self._pays(queue, started) else \
                            next((w for w in self._workers if w.can_take()), None)
                    if worker is None:
                        break
                    task = queue.popleft()
                    try:
                        worker.give(task, jobs[task.job][1], self.spec.timeout)
                    except OSError:  # died: while idle, retired here; while on a task, found below
                        queue.appendleft(task)
                        if worker.task is not None:
                            break
                        self._retire(worker)
                busy = [w for w in self._workers if w.task]
                wake = min(w.deadline for w in busy)
                if queue and len(self._workers) < wanted and self._pace.startup is not None and self._pace.per_case is None:
                    wake = min(wake, started + PAYS_AFTER * self._pace.startup)  # to ask again whether another worker pays
                wait([w.conn for w in busy], timeout=max(0.0, wake - time.monotonic()))
                for worker in busy:
                    failure = None
                    try:
                        while worker.task and worker.conn.poll():
                            self._take(worker, worker.conn.recv(), found[worker.task.job])
                    except (EOFError, OSError):
                        failure = _death(worker)
                        if not worker.ready:
                            raise TargetError(failure.replace("on this case", "while importing the target")
                                              + "; check target.callable in improver.yaml") from None
                    if worker.task and failure is None and time.monotonic() >= worker.deadline:
                        failure = f"timed out after {self.spec.timeout:g} s (target.timeout in improver.yaml)"
                    if failure:
                        task, sent = worker.task, list(worker.queued)
                        self._retire(worker)
                        queue.extendleft(reversed(sent))  # not started: as they were
                        self._fail(task, failure, queue, found[task.job])
        except BaseException:
            _stop_all(self._workers)  # tasks half done: start clean next time
            raise
        return [job.results for job in found]  # type: ignore[misc]

    def _start(self) -> _Worker:
        self._workers.append(_Worker(self.spec, self.root))
        return self._workers[-1]

    def _retire(self, worker: _Worker) -> None:
        worker.stop()
        self._workers.remove(worker)

    def _take(self, worker: _Worker, message: tuple, answers: _Answers) -> None:
        """Record one message from a worker."""
        kind, value = message
        task = worker.task
        if kind == "load_error":
            raise TargetError(value)
        now = time.monotonic()
        if kind == "ready":
            worker.ready, worker.has_batch, worker.since = True, value, now
            task.batch = task.batch and value
            self._pace.startup = self._pace.startup or now - worker.spawned
        elif kind == "batch":
            self._pace.per_case = (now - worker.since) / max(len(value), 1)
            answers.record(task.start, value)
            worker.done(self.spec.timeout)
            return
        elif kind == "case":
            answers.record(task.start + task.done, [value])
            task.done += 1
            if task.done >= PACE_SAMPLE:  # the task's mean over enough cases: a first call or one late read says little
                self._pace.per_case = (now - worker.since) / task.done
            task.batch = False  # answered case by case from here on
        elif kind == "done":
            worker.done(self.spec.timeout)
            return
        worker.deadline = now + self.spec.timeout

    def _fail(self, task: _Task, why: str, queue: deque, answers: _Answers) -> None:
        """A worker died or hung on ``task``: a batch is retried case by case; case by case,
        the case in flight gets the error and the rest of the slice goes back in the queue."""
        if task.batch and len(task.cases) > 1:
            queue.appendleft(_Task(task.start, task.cases, batch=False, job=task.job))
            return
        index = task.start + task.done
        answers.record(index, [_error(why)])
        rest = task.cases[task.done + 1:]
        if rest:
            queue.appendleft(_Task(index + 1, rest, batch=False, job=task.job))

