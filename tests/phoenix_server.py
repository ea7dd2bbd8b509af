"""A fresh Phoenix server on loopback for the tests that need one (the ``phoenix`` fixture, shared).

The server runs from its own virtual environment (``.venv-phoenix`` at the repository
root, built on first use with the pinned ``arize-phoenix``, about 2 minutes, and reused
after). Set IMPROVER_SKIP_PHOENIX_IF_UNBUILDABLE=1 to skip, instead of failing, when that
environment cannot be built (no package index).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PHOENIX_VENV = ROOT / ".venv-phoenix"
PHOENIX_PIN = "arize-phoenix==20.26.1"


def phoenix_python() -> Path:
    python = PHOENIX_VENV / "bin" / "python"
    check = [str(python), "-c", "import phoenix.server.main"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PHOENIX_VENV)], check=True, capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", PHOENIX_PIN], check=True, capture_output=True, timeout=1200)
    except (subprocess.SubprocessError, OSError) as error:
        output = getattr(error, "stderr", b"") or b""
        message = f"cannot build {PHOENIX_VENV} with {PHOENIX_PIN}: {error} {output.decode(errors='replace')[-2000:]}"
        if os.environ.get("IMPROVER_SKIP_PHOENIX_IF_UNBUILDABLE"):
            pytest.skip(message)
        pytest.fail(message)
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory):
    """The base URL of a fresh Phoenix server (offline, telemetry off, its own working dir)."""
    python = phoenix_python()
    folder = tmp_path_factory.mktemp("phoenix")
    port = free_port()
    env = dict(os.environ, PHOENIX_WORKING_DIR=str(folder), PHOENIX_HOST="127.0.0.1", PHOENIX_PORT=str(port),
               PHOENIX_GRPC_PORT=str(free_port()), PHOENIX_TELEMETRY_ENABLED="false")
    log = (folder / "server.log").open("w")
    server = subprocess.Popen([str(python), "-m", "phoenix.server.main", "serve"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if server.poll() is not None:
                pytest.fail(f"Phoenix exited with {server.returncode}: {(folder / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Phoenix did not start in 180 s: {(folder / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
