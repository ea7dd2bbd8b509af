"""The MCP server over real transports: stdio and streamable HTTP subprocesses, and the
MCP Inspector CLI (the reference client) listing and calling tools."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from improver.demo import make_demo_project
from improver.mcp import TOOL_NAMES
from improver.workspace import Workspace

IMPROVER = str(Path(sys.executable).with_name("improver"))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = make_demo_project(tmp_path_factory.mktemp("transports") / "demo", n=40)
    Workspace(folder).ingest(str(folder / "traces.jsonl"))
    return folder


async def list_and_call(client: Client) -> tuple[set[str], dict]:
    tools = {t.name for t in (await client.list_tools()).tools}
    result = await client.call_tool("graph_summary", {})
    assert not result.is_error, result.content
    return tools, result.structured_content


def test_stdio_subprocess(project):
    params = StdioServerParameters(command=IMPROVER, args=["serve", "--project", str(project)])

    async def main():
        async with Client(params, read_timeout_seconds=60) as client:
            return await list_and_call(client)
    tools, summary = anyio.run(main)
    assert tools == set(TOOL_NAMES) and summary["sessions"] == 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamable_http_on_loopback(project):
    port = free_port()
    server = subprocess.Popen([IMPROVER, "serve", "--project", str(project), "--http", f"127.0.0.1:{port}"],
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the HTTP server did not start listening"
                time.sleep(0.2)

        async def main():
            async with Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=60) as client:
                return await list_and_call(client)
        tools, summary = anyio.run(main)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert tools == set(TOOL_NAMES) and summary["sessions"] == 40


def test_http_address_must_be_host_and_port(project):
    run = subprocess.run([IMPROVER, "serve", "--project", str(project), "--http", "localhost:http"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "give HOST:PORT or PORT" in run.stderr


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed: the MCP Inspector CLI needs it")
def test_mcp_inspector_cli_lists_and_calls_tools(project):
    inspector = ["npx", "-y", "@modelcontextprotocol/inspector", "--cli", IMPROVER, "serve", "--project", str(project)]
    listed = subprocess.run(inspector + ["--method", "tools/list"], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert {t["name"] for t in json.loads(listed.stdout)["tools"]} == set(TOOL_NAMES)
    called = subprocess.run(inspector + ["--method", "tools/call", "--tool-name", "get_session",
                                         "--tool-arg", "session_id=PR-001"], capture_output=True, text=True, timeout=300)
    assert called.returncode == 0, called.stderr
    session = json.loads(called.stdout)["structuredContent"]
    assert session["session_id"] == "PR-001" and session["review"]["reasoning"]
