"""A large native JSONL file read in a second process while this one stores it.

Reading a native trace file (parsing each line, checking its event, screening it for PII
and writing its rows) costs about as much as storing the rows in SQLite. For a file of
``PARALLEL_FROM`` bytes or more, ``rows`` has a fresh interpreter (``python -c WORKER``,
never forked: no inherited connections or locks) do the reading, exactly as
``Workspace`` would in this process, and hand the rows over a batch at a time, so the
two halves run on two cores. The rows, the report and the redaction counts are the same
either way (a test compares them). Batches are committed as they come: if the worker
dies, what was stored stays, and ingesting the file again stores the rest.
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Iterator

from improver import errors
from improver.sources.native import NativeJsonlSource
from improver.store import BatchRows

PARALLEL_FROM = 16 * 2**20  # bytes (~20,000 events): below this the worker's start-up costs more than it saves

# The worker watches its parent before any slow import, as the target's workers do (runners.local).
WORKER = """import os, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(70)
threading.Thread(target=watch, daemon=True, name="improver-parent-watch").start()
from improver.sources.native_worker import _serve
_serve()
"""


def wanted(source) -> bool:
    """Whether this source is read in a worker: a native JSONL file of ``PARALLEL_FROM`` bytes or more."""
    try:
        return type(source) is NativeJsonlSource and source.path.stat().st_size >= PARALLEL_FROM
    except OSError:  # unreadable: the source says why, in this process
        return False


def rows(source: NativeJsonlSource, project_root: Path, redactor) -> Iterator[BatchRows]:
    """The source's rows, batch by batch, read in a worker process; at the end ``source.rows_read`` and
    the redactor's ``counts`` are what reading it here would have left."""
    worker = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    inbox = Connection(os.dup(worker.stdout.fileno()), writable=False)
    outbox = Connection(os.dup(worker.stdin.fileno()), readable=False)
    worker.stdout.close()
    worker.stdin.close()
    try:
        outbox.send((str(project_root), str(source.path), sys.path))
        while True:
            try:
                kind, value = inbox.recv()
            except (EOFError, OSError):
                code = worker.wait()
                raise errors.TraceError(
                    f"the process reading {source.path} exited with code {code} before the end; the batches "
                    "before it are stored: run the same ingest again to store the rest") from None
            if kind == "rows":
                yield value
            elif kind == "end":
                source.rows_read = value["rows_read"]
                if redactor is not None:
                    redactor.counts.update(value["redacted"])
                return
            else:  # "error": what reading it here would have raised
                name, message = value
                error = getattr(errors, name, None)
                raise (error if isinstance(error, type) and issubclass(error, errors.ImproverError)
                       else errors.TraceError)(message)
    finally:
        inbox.close()
        outbox.close()
        if worker.poll() is None:
            worker.kill()
        worker.wait()


def _serve() -> None:
    """In the worker: read the file as ``Workspace._ingest`` does, and send its rows a batch at a time."""
    inbox, outbox = Connection(os.dup(0), writable=False), Connection(os.dup(1), readable=False)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)  # prints (a redaction plugin's) go to stderr, not into the protocol
    root, path, parent_path = inbox.recv()
    sys.path += [entry for entry in parent_path if entry not in sys.path]
    from improver.project import Project
    from improver.redact import Redactor
    from improver.store import batch_rows, batched

    gc.disable()  # events hold no cycles (as when stored in this process: ``TraceStore._bulk_write``)
    try:
        project = Project.load(root)
        source = NativeJsonlSource(Path(path), project.config.ingest)
        redactor = Redactor.from_project(project)
        events = redactor.lines(source.lines()) if redactor is not None else source.events()
        for batch in batched(events):
            outbox.send(("rows", batch_rows(batch)))
        outbox.send(("end", {"rows_read": source.rows_read, "redacted": dict(redactor.counts) if redactor else {}}))
    except Exception as error:  # noqa: BLE001 - said in the parent, as the same kind of error
        outbox.send(("error", (type(error).__name__, str(error))))
