"""A large native JSONL file read in two processes while this one stores it.

Reading a native trace file (parsing each line, checking its event, screening it for PII
and making its rows) costs more than storing the rows in SQLite. For a file of
``PARALLEL_FROM`` bytes or more, ``rows`` has a fresh interpreter (``python -c WORKER``,
never forked: no inherited connections or locks) read the lines past the first
``OWN_SHARE`` of the file, exactly as ``Workspace`` would, while this process reads the
first part itself, then stores both parts' rows in file order, so reading and storing run
on two cores. A gzipped file is read whole by the worker. The rows, line numbers, report
and redaction counts are the same as when the file is read in one process (a test
compares them). Batches are committed as they come: if the worker dies, what was stored
stays, and ingesting the file again stores the rest.
"""
from __future__ import annotations

import gc
import pickle
import queue
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Iterator

from improver import errors, worker_process
from improver.redact import Redactor, screened
from improver.sources import FilePart
from improver.sources.native import NativeJsonlSource
from improver.store import BatchRows, batch_rows, batched

PARALLEL_FROM = 16 * 2**20  # bytes (~20,000 events): below this the worker's start-up costs more than it saves
WAITING = 64  # batches of the worker's rows held while this process reads its own part (~2 MB each at 100k)
OWN_SHARE = 0.25  # of the file read in this process, which also stores every row: the two parts then take about as long

WORKER = worker_process.script("improver.sources.native_worker:_serve")


def wanted(source) -> bool:
    """Whether this source is read in a worker: a native JSONL file of ``PARALLEL_FROM`` bytes or more."""
    try:
        return type(source) is NativeJsonlSource and source.path.stat().st_size >= PARALLEL_FROM
    except OSError:  # unreadable: the source says why, in this process
        return False


def split(path: Path, share: float = OWN_SHARE) -> FilePart | None:
    """Where the worker's part starts: the first line that starts past ``share`` of the file (None for
    a gzipped file, which cannot be read from the middle, or when no line starts there)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if handle.read(2) == b"\x1f\x8b":
            return None
        handle.seek(int(size * share))
        handle.readline()  # the rest of the line that is under way there
        start = handle.tell()
        if start >= size:
            return None
        handle.seek(0)
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(min(2**20, start - handle.tell())), b""))
    return FilePart(start, None, lines + 1)


def rows(source: NativeJsonlSource, project_root: Path, redactor) -> Iterator[BatchRows]:
    """The source's rows, batch by batch: the first ``OWN_SHARE`` of the file read here, the rest in a
    worker process meanwhile. At the end ``source.rows_read`` and the redactor's ``counts`` are what
    reading it all here would have left."""
    part = split(source.path)
    worker, inbox, outbox = worker_process.start(WORKER)
    received: queue.Queue = queue.Queue(WAITING)
    stop = threading.Event()
    try:
        outbox.send((str(project_root), str(source.path), part, sys.path))
        threading.Thread(target=_receive, args=(inbox, received, stop), daemon=True, name="improver-ingest-rows").start()
        own = NativeJsonlSource(source.path, source.limits, FilePart(0, part.start, 1)) if part else None
        if own is not None:  # read here while the worker reads the rest: its batches wait in ``received``
            yield from map(batch_rows, batched(screened(own, redactor)))
        while True:
            message = received.get()
            if message is None:
                code = worker.wait()
                raise errors.TraceError(
                    f"the process reading {source.path} exited with code {code} before the end; the batches "
                    "before it are stored: run the same ingest again to store the rest")
            kind, value = pickle.loads(message)
            if kind == "rows":
                yield value
            elif kind == "end":
                source.rows_read = value["rows_read"] + (own.rows_read if own else 0)
                if redactor is not None:
                    redactor.counts.update(value["redacted"])
                return
            else:  # "error": what reading it here would have raised
                name, text = value
                error = getattr(errors, name, None)
                raise (error if isinstance(error, type) and issubclass(error, errors.ImproverError)
                       else errors.TraceError)(text)
    finally:
        stop.set()
        if worker.poll() is None:
            worker.kill()
        worker.wait()
        inbox.close()
        outbox.close()


def _receive(inbox: Connection, received: queue.Queue, stop: threading.Event) -> None:
    """The worker's messages as they come, still pickled, so the worker goes on while this process reads
    its own part (up to ``WAITING`` of them: then the pipe fills and the worker waits); None once the
    worker is gone. Ends when ``stop`` is set."""
    while not stop.is_set():
        try:
            message = inbox.recv_bytes()
        except (EOFError, OSError):
            message = None
        while not stop.is_set():
            try:
                received.put(message, timeout=0.2)
                break
            except queue.Full:
                continue
        if message is None:
            return


def _serve() -> None:
    """In the worker: read the file as ``Workspace._ingest`` does, and send its rows a batch at a time."""
    inbox, outbox = worker_process.parent_connections()  # a redaction plugin's prints go to stderr
    root, path, part, parent_path = inbox.recv()
    sys.path += [entry for entry in parent_path if entry not in sys.path]
    from improver.project import Project

    gc.disable()  # events hold no cycles (as when stored in this process: ``TraceStore._bulk_write``)
    try:
        project = Project.load(root)
        source = NativeJsonlSource(Path(path), project.config.ingest, part)
        redactor = Redactor.from_project(project)
        for batch in batched(screened(source, redactor)):
            outbox.send(("rows", batch_rows(batch)))
        outbox.send(("end", {"rows_read": source.rows_read, "redacted": dict(redactor.counts) if redactor else {}}))
    except Exception as error:  # noqa: BLE001 - said in the parent, as the same kind of error
        outbox.send(("error", (type(error).__name__, str(error))))
