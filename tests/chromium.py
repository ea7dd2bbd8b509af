"""Open a page in headless Chromium as a person would, over the DevTools protocol (CDP).

``open_page(path)`` starts Debian's ``chromium`` with a fresh profile, loads the file,
and returns what a test asserts on: console messages, uncaught exceptions, every
network request the page made, the load time the page measured itself, a full-page
screenshot and the answer to a JavaScript expression. Used by tests/test_report_html.py
and bench/report.py.
"""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websocket

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@dataclass
class PageVisit:
    console: list[dict] = field(default_factory=list)  # {level, text}
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # URLs the page asked for (the document itself included)
    load_ms: float = 0.0  # navigation start to load event end, as the page measured it
    wall_ms: float = 0.0  # from the navigate command to the load event, as seen from here
    screenshot: bytes = b""
    value: object = None  # the result of ``expression``


class DevTools:
    """One page target's websocket, with the events seen while waiting for answers."""

    def __init__(self, url: str):
        self.socket = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method:
                    return event
            seen = len(self.events)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} in {timeout} s")
            self.socket.settimeout(max(deadline - time.monotonic(), 0.1))
            self.events.append(json.loads(self.socket.recv()))


def open_page(path: Path, expression: str = "null", width: int = 1280, screenshot: bool = True) -> PageVisit:
    """Load ``path`` in a fresh headless Chromium and report what happened."""
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("no chromium on PATH (apt-get install -y chromium)")
    profile = tempfile.mkdtemp(prefix="improver-chromium-")
    process = subprocess.Popen(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None:
            line = process.stderr.readline()
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if match:
                port = int(match.group(1))
            elif not line and process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {process.poll()})")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
        target = json.loads(urllib.request.urlopen(request, timeout=30).read())
        tools = DevTools(target["webSocketDebuggerUrl"])
        try:
            return visit(tools, path, expression, width, screenshot)
        finally:
            tools.socket.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


def visit(tools: DevTools, path: Path, expression: str, width: int, screenshot: bool) -> PageVisit:
    for domain in ("Page", "Runtime", "Network", "Log"):
        tools.send(f"{domain}.enable")
    tools.send("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
    started = time.perf_counter()
    tools.send("Page.navigate", url=path.resolve().as_uri())
    tools.wait_for("Page.loadEventFired", timeout=60)
    out = PageVisit(wall_ms=(time.perf_counter() - started) * 1000)
    timing = tools.send("Runtime.evaluate", returnByValue=True, expression=(
        "(() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd || n.duration; })()"))
    out.load_ms = float(timing["result"].get("value") or 0)
    out.value = tools.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")
    if screenshot:
        metrics = tools.send("Page.getLayoutMetrics")
        height = int(metrics["cssContentSize"]["height"])
        tools.send("Emulation.setDeviceMetricsOverride", width=width, height=min(height, 16000), deviceScaleFactor=1,
                   mobile=False)
        out.screenshot = base64.b64decode(tools.send("Page.captureScreenshot", format="png")["data"])
    for event in tools.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            out.console.append({"level": params["type"],
                                "text": " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])})
        elif method == "Log.entryAdded":
            out.console.append({"level": params["entry"]["level"], "text": params["entry"]["text"]})
        elif method == "Runtime.exceptionThrown":
            out.exceptions.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Network.requestWillBeSent":
            out.requests.append(params["request"]["url"])
    return out
