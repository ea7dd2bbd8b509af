"""Attacks a security reviewer tried (issue 12), each refused: credentials sent to any host, reading
outside the project, an unauthenticated network bind, git option injection, control characters in ids."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import httpx
import pytest
import yaml
from mcp import Client
from typer.testing import CliRunner

from improver.cli import app
from improver.demo import make_demo_project
from improver.errors import ExperimentError, ProjectError
from improver.experiments import check_id
from improver.mcp import build_server
from improver.review import GitError, create_pr
from improver.workspace import Workspace
from pr_helpers import git, git_env, repo, scored_project  # noqa: F401 (fixtures)

IMPROVER = str(Path(sys.executable).with_name("improver"))
KEY = "phx-key-0123456789abcdef"
BODY = "internal-only body: db password hunter2"


@pytest.fixture
def project(tmp_path):
    return make_demo_project(tmp_path / "p", n=20)


def name_remote(project: Path, *urls: str) -> None:
    data = yaml.safe_load((project / "improver.yaml").read_text())
    data.setdefault("sources", {})["remote"] = list(urls)
    (project / "improver.yaml").write_text(yaml.safe_dump(data))


@pytest.fixture
def listener():
    """A real HTTP server on loopback that records each request's Authorization header and answers 500
    with a body that must never reach the caller."""
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = BODY.encode()
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"phoenix+http://127.0.0.1:{server.server_address[1]}/proj", seen
    server.shutdown()
    server.server_close()


def mcp_call(project: Path, tool: str, arguments: dict):
    async def main():
        async with Client(build_server(project)) as client:
            return await client.call_tool(tool, arguments)
    return anyio.run(main)


# --- credentials and remote sources ------------------------------------------------------
def test_mcp_ingest_refuses_a_remote_source_the_project_does_not_name(project, listener, monkeypatch):
    url, seen = listener
    monkeypatch.setenv("PHOENIX_API_KEY", KEY)
    result = mcp_call(project, "ingest_traces", {"source": url})
    assert result.is_error
    text = result.content[0].text
    assert "sources" in text and "remote" in text and BODY not in text
    assert seen == []  # no request at all, so no key


def test_the_key_goes_only_to_the_named_server_and_errors_never_echo_bodies(project, listener, monkeypatch):
    url, seen = listener
    monkeypatch.setenv("PHOENIX_API_KEY", KEY)
    name_remote(project, url)
    result = mcp_call(project, "ingest_traces", {"source": url})
    assert result.is_error and BODY not in result.content[0].text and "500" in result.content[0].text
    assert seen == [f"Bearer {KEY}"]

    other = url.replace("127.0.0.1", "localhost")  # the same listener under a name the project does not give
    run = CliRunner().invoke(app, ["ingest", "--from", other, "--project", str(project)])
    assert run.exit_code != 0 and BODY not in run.output
    assert seen[1:] == [None]  # the user's own CLI may pull it, but without the key


def test_mcp_ingest_refuses_paths_outside_the_project_even_with_a_scheme_inside(project, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_text((project / "traces.jsonl").read_text())
    (tmp_path / "x" / "a:").mkdir(parents=True)
    for source in (f"{tmp_path}/x/a://../../outside/secret.jsonl", "../outside/secret.jsonl",
                   str(outside / "secret.jsonl"), "file:///" + str(outside / "secret.jsonl")):
        result = mcp_call(project, "ingest_traces", {"source": source})
        assert result.is_error, source
    assert Workspace(project).sessions == []
    with pytest.raises(ProjectError, match="outside the project"):
        Workspace(project).project.untrusted_source(f"{tmp_path}/x/a://../../outside/secret.jsonl")
    inside = mcp_call(project, "ingest_traces", {"source": "traces.jsonl"})
    assert not inside.is_error and inside.structured_content["reviewed_sessions"] == 20


# --- improver serve --http ---------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_on_a_network_address_refuses_to_start_without_token_and_hosts(project):
    port = free_port()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("IMPROVER_MCP_")}
    run = subprocess.run([IMPROVER, "serve", "--project", str(project), "--http", f"0.0.0.0:{port}"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2
    assert "--token" in run.stderr and "IMPROVER_MCP_TOKEN" in run.stderr and "--allow-host" in run.stderr
    run = subprocess.run([IMPROVER, "serve", "--project", str(project), "--http", f"0.0.0.0:{port}",
                          "--token", "t" * 32], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2 and "--allow-host" in run.stderr and "--token" not in run.stderr.split("needs")[1]


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_serve_on_a_network_address_needs_the_bearer_token_and_an_allowed_host(project):
    Workspace(project).ingest(str(project / "traces.jsonl"))
    port, token = free_port(), "s3cret-token-for-the-test-0123456789"
    server = subprocess.Popen([IMPROVER, "serve", "--project", str(project), "--http", f"0.0.0.0:{port}",
                               "--allow-host", "improver.internal"], stderr=subprocess.PIPE, text=True,
                              env={**__import__("os").environ, "IMPROVER_MCP_TOKEN": token})
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
        url = f"http://127.0.0.1:{port}/mcp"
        allowed = {"Host": f"improver.internal:{port}"}
        assert httpx.post(url, json=INITIALIZE, headers={**ACCEPT, **allowed}).status_code == 401
        wrong = httpx.post(url, json=INITIALIZE, headers={**ACCEPT, **allowed, "Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        bad_host = httpx.post(url, json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {token}"})
        assert bad_host.status_code in (403, 421)  # Host 127.0.0.1 is not in the allowed list
        good = httpx.post(url, json=INITIALIZE, headers={**ACCEPT, **allowed, "Authorization": f"Bearer {token}"})
        assert good.status_code == 200 and "improver" in good.text
        session = good.headers["mcp-session-id"]
        headers = {**ACCEPT, **allowed, "Authorization": f"Bearer {token}", "mcp-session-id": session,
                   "mcp-protocol-version": "2025-06-18"}
        httpx.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        called = httpx.post(url, headers=headers, timeout=60, json={
            "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "graph_summary", "arguments": {}}})
        assert called.status_code == 200
        message = json.loads(next(line[5:] for line in called.text.splitlines() if line.startswith("data:")))
        assert message["result"]["structuredContent"]["sessions"] == 20
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- git and ids -------------------------------------------------------------------------
def test_pr_base_cannot_smuggle_a_git_option(repo, tmp_path):
    target = tmp_path / "index-written"
    with pytest.raises(GitError, match="base"):
        create_pr(Workspace(repo), "0002-cycle-1", base=f"--index-output={target}")
    assert not target.exists()
    for option in ("branch", "remote"):
        with pytest.raises(GitError, match=option):
            create_pr(Workspace(repo), "0002-cycle-1", **{option: f"--upload-pack=touch {target}"})
    assert not target.exists()
    assert git(repo, "branch", "--list", "improver/*") == ""


def test_ids_reject_control_characters(project, tmp_path):
    for bad in ("0001-baseline\n", "0001-base\x1bline", "0001-baseline\r"):
        with pytest.raises(ExperimentError):
            check_id(bad)
    lines = (project / "traces.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["session_id"] = "S-1\n## injected heading"
    (tmp_path / "t.jsonl").write_text(json.dumps(first) + "\n")
    report = Workspace(project).ingest(str(tmp_path / "t.jsonl"))
    assert report.quarantined == 1 and report.events == 0


# --- PII and secrets: the corpus through a full run ---------------------------------------
def artifacts_text(project: Path, inputs: list[Path], branch: str, extra: list[str]) -> dict[str, str]:
    """Every file improver wrote in the project (the trace inputs and the user's improver.yaml aside),
    the PR branch's commit (message and diff), and ``extra`` texts (MCP answers), by name."""
    texts = {}
    skip = {*inputs, project / "improver.yaml", project / ".improver" / "redaction.key"}
    for path in sorted(project.rglob("*")):
        if path.is_file() and path not in skip and ".git" not in path.parts:
            texts[str(path.relative_to(project))] = path.read_bytes().decode("utf-8", "replace")
    texts["PR branch"] = git(project, "log", "-p", f"main..{branch}")
    for number, text in enumerate(extra):
        texts[f"MCP answer {number}"] = text
    return texts


def test_planted_pii_reaches_no_artifact_of_ingest_cycle_pr_export_and_mcp(tmp_path, git_env):
    from improver.cycle import run_cycles
    from pii_corpus import corpus_project

    project, plants, similar, inputs = corpus_project(tmp_path / "p")
    assert len(plants) >= 200 and len(similar) >= 100
    assert {p.kind for p in plants} >= {"email", "phone", "card", "iban", "ssn", "ip", "secret", "aws_secret",
                                        "password", "name"}
    assert {p.field for p in plants} >= {"case_value", "case_key", "case_nested", "case_list", "case_number",
                                         "agent_reasoning", "human_reasoning", "conditions", "cited", "config_version",
                                         "reviewer", "session_id", "precedent"}
    assert {p.format for p in plants} == {"native", "openinference", "otlp"}
    ws = Workspace(project)
    for path in inputs:
        ws.ingest(str(path))
    assert len(ws.sessions) == 72  # masked ids stay distinct
    stored = json.dumps([s.case for s in ws.sessions]) + " ".join(s.agent_reasoning for s in ws.sessions)
    masked = [v for v in similar if str(v) not in stored]
    assert len(masked) <= len(similar) // 100, masked  # ≤1% of look-alikes masked

    run_cycles(ws, max_cycles=1)
    proposing = [e for e in ws.experiments.all() if e.manifest.proposals]
    assert proposing, "the corpus project should still yield proposals"
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "config", "improver.yaml")
    git(project, "commit", "-q", "-m", "target config")
    git(tmp_path, "init", "-q", "--bare", str(tmp_path / "remote.git"))
    git(project, "remote", "add", "origin", str(tmp_path / "remote.git"))
    pr = create_pr(Workspace(project), proposing[0].id, push=False)
    exported = CliRunner().invoke(app, ["graph", "export", "--project", str(project), "--graphml",
                                        str(project / "graph.graphml"), "--cypher", str(project / "graph.cypher")])
    assert exported.exit_code == 0, exported.output

    async def answers():
        async with Client(build_server(project)) as client:
            out = [await client.call_tool("list_disagreements", {"split": "all", "limit": 500}),
                   await client.call_tool("cluster_precedents", {}),
                   await client.call_tool("graph_summary", {})]
            rows = out[0].structured_content["sessions"]
            for row in rows[:8]:
                out.append(await client.call_tool("get_session", {"session_id": row["session_id"]}))
            return out
    results = anyio.run(answers)
    assert not any(r.is_error for r in results)
    texts = artifacts_text(project, inputs, pr.branch, [json.dumps(r.structured_content) for r in results])
    assert {"graph.graphml", "graph.cypher", ".improver/traces.sqlite", f".improver/pr-{pr.experiment}.md"} <= set(texts)
    leaks = [(p.kind, p.field, p.format, name) for p in plants for name, text in texts.items()
             if any(needle in text for needle in p.needles)]
    assert leaks == [], leaks[:10]


def test_the_leak_scan_refuses_to_write_unmasked_pii_and_says_how(tmp_path):
    from improver.leakscan import LeakError

    project = make_demo_project(tmp_path / "p", n=30)
    data = yaml.safe_load((project / "improver.yaml").read_text())
    data["redaction"] = {"enabled": False}  # traces stored unmasked: the scan still guards every way out
    (project / "improver.yaml").write_text(yaml.safe_dump(data))
    lines = [json.loads(line) for line in (project / "traces.jsonl").read_text().splitlines()]
    for event in lines:
        if event["type"] == "review":
            event["reasoning"] += " SSN 123-45-6789, key AKIAIOSFODNN7EXAMPLE."
    (project / "traces.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    ws = Workspace(project)
    ws.ingest(str(project / "traces.jsonl"))
    with pytest.raises(LeakError, match=r"refusing to write experiments/.*(secret|ssn).*redaction") as refused:
        from improver.cycle import run_cycles
        run_cycles(ws, max_cycles=1)
    assert "123-45-6789" not in str(refused.value) and "AKIA" not in str(refused.value)
    assert not any("123-45-6789" in p.read_text() for p in (project / "experiments").rglob("*") if p.is_file())
    result = mcp_call(project, "list_disagreements", {"split": "all"})
    assert result.is_error and "refusing to write this MCP answer" in result.content[0].text
    assert "123-45-6789" not in result.content[0].text


def test_a_hash_that_starts_with_ten_digits_is_neither_masked_nor_refused_but_a_phone_with_an_extension_is():
    from improver.leakscan import LeakError, LeakScan
    from improver.redact import Redactor

    manifest = '{"config_hash": "6805765515dca7cf", "id": "6805765515_x"}'
    assert Redactor().text(manifest) == manifest  # was "[PHONE]dca7cf": a run stopped on its own manifest
    LeakScan().check(manifest, "experiments/0002-cycle-1/manifest.json")
    assert Redactor().text("call (680) 576-5515x12") == "call [PHONE]x12"
    assert Redactor().text("call 680-576-5515 ext. 3") == "call [PHONE] ext. 3"
    reviewed = "  reviewed: 3603274439ed0a6c"  # a baseline manifest's fingerprint: its digits meet an e
    assert Redactor().text(reviewed) == reviewed
    LeakScan().check(reviewed, "experiments/0001-baseline/manifest.yaml")
    config = "config_hash: 7e21974492706693"  # 14 digits that pass Luhn, inside a hash
    assert Redactor().text(config) == config
    LeakScan().check(config, "experiments/0002-cycle-1/manifest.yaml")
    assert Redactor().text("card 21974492706693 on file") == "card [CARD] on file"
    with pytest.raises(LeakError):
        LeakScan().check('{"note": "call 680-576-5515 today"}', "a note")


def test_review_queue_files_pass_the_leak_scan(tmp_path):
    from improver.cli.queue import write_picks
    from improver.leakscan import LeakError, LeakScan

    class Pick:
        def __init__(self, reason):
            self.reason = reason

        def as_dict(self):
            return {"session_id": "PR-1", "reason": self.reason}

    out = tmp_path / "queue.jsonl"
    write_picks(out, [Pick("largest disagreement")], LeakScan())
    assert out.exists()
    with pytest.raises(LeakError, match="the review queue"):
        write_picks(tmp_path / "leak.jsonl", [Pick("call 415-555-0132, SSN 123-45-6789")], LeakScan())
    assert not (tmp_path / "leak.jsonl").exists()


def test_decision_rows_are_scanned_by_their_values_and_a_finding_names_the_lines_the_file_would():
    import orjson

    from improver.leakscan import LeakError, LeakScan

    rows = [{"session_id": f"S-{i:05d}", "decision": "approve", "confidence": 0.9, "reasoning": "Within budget.",
             "cited": ["policy:tiers"]} for i in range(6000)]
    rows[10]["reasoning"] = rows[4000]["reasoning"] = "Call 415-555-0132 first."
    rows[20]["session_id"] = "S-123-45-6789"
    rows[30]["reasoning"] = "Two lines\u2028in one value."  # a line break str.splitlines sees, left raw by JSON
    rows[40]["cited"] = ["key AKIAIOSFODNN7EXAMPLE"]
    scan = LeakScan()
    by_lines = scan.find(b"".join(orjson.dumps(r) + b"\n" for r in rows).decode())
    by_values = scan.find_rows(rows)
    assert sorted(by_values) == sorted(by_lines) == [11, 21, 41, 4001]
    assert all(set(by_values[n]) == set(by_lines[n]) for n in by_lines)
    with pytest.raises(LeakError, match=r"refusing to write decisions.jsonl: .*\(line 11, 21, 41, 4001\)"):
        scan.check_rows(rows, "decisions.jsonl")
    scan.check_rows(rows[:10] + rows[11:20] + rows[21:40], "decisions.jsonl")  # nothing found: no error
    scanned = []
    scan.find = lambda text: scanned.append(text.count("\n") + 1) or LeakScan.find(scan, text)
    assert sorted(scan.find_rows(rows)) == [11, 21, 41, 4001]  # again: only what was not found clean is scanned
    assert scanned == [3]  # the three values that hold a leak; each still found on its lines
