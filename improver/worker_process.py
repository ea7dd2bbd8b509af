"""Fresh worker interpreters that talk to their parent over their stdin and stdout.

A worker is ``python -c`` of ``script(...)``, never a fork: nothing of the parent's state
(LangGraph's checkpointer, SQLite connections, locks, threads) comes with it. It watches its
parent before any slow import and exits when the parent goes away, even while busy or still
loading (no PR_SET_PDEATHSIG: that fires when the parent's *thread* that started the worker
ends, which is not the parent dying). Used by the target's workers (``runners.local``) and
by the reader of large trace files (``sources.native_worker``).
"""
from __future__ import annotations

import os
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

WATCH = """import os, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(70)
threading.Thread(target=watch, daemon=True, name="improver-parent-watch").start()
"""


def script(entry: str) -> str:
    """The worker's program: watch the parent, then call ``module:function``."""
    module, function = entry.split(":")
    return f"{WATCH}from {module} import {function}\n{function}()\n"


def start(program: str, cwd: Path | None = None, widen: Callable[[int], None] | None = None
          ) -> tuple[subprocess.Popen, Connection, Connection]:
    """A worker running ``program``, with the connections that read from it and write to it
    (``widen``, if given, is called on each pipe first)."""
    process = subprocess.Popen([sys.executable, "-c", program], cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    if widen is not None:
        for pipe in (process.stdin, process.stdout):
            widen(pipe.fileno())
    inbox = Connection(os.dup(process.stdout.fileno()), writable=False)
    outbox = Connection(os.dup(process.stdin.fileno()), readable=False)
    process.stdout.close()
    process.stdin.close()
    return process, inbox, outbox


def parent_connections() -> tuple[Connection, Connection]:
    """In the worker: the connections from and to the parent, on the original stdin and stdout;
    stdin then reads nothing and prints go to stderr, never into the protocol."""
    inbox, outbox = Connection(os.dup(0), writable=False), Connection(os.dup(1), readable=False)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    return inbox, outbox
