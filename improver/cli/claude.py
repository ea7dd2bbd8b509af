"""Commands for agents: ``improver serve`` (the MCP server) and ``improver install-claude``."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from improver.cli.app import app, ProjectOption, console
from improver.errors import ImproverError

SKILLS = ("context-graph-mining", "improvement-cycle", "review-proposal")


# What .mcp.json holds: no machine paths, so a team can commit it (Claude Code starts project servers in
# the project folder, and `improver` must be on the PATH of the shell that starts Claude Code).
SERVER_ENTRY = {"command": "improver", "args": ["serve"]}


def on_path() -> bool:
    """True when the ``improver`` on PATH is this installation's."""
    found = shutil.which("improver")
    return found is not None and Path(found).resolve() == Path(sys.executable).with_name("improver").resolve()


def install_claude(root: Path) -> tuple[Path, list[Path]]:
    """Register the MCP server in the folder's .mcp.json and copy the skills into .claude/skills/."""
    from improver.bundled import bundled

    root = root.resolve()
    path = root / ".mcp.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except json.JSONDecodeError as error:
        raise ImproverError(f"{path} is not valid JSON ({error}); fix or remove it and run install-claude again")
    skills = bundled("skills")
    installed = []
    for name in SKILLS:
        target = root / ".claude" / "skills" / name
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(skills / name / "SKILL.md", target / "SKILL.md")
        installed.append(target / "SKILL.md")
    config.setdefault("mcpServers", {})["improver"] = SERVER_ENTRY
    fd, temporary = tempfile.mkstemp(dir=root, prefix=".mcp.json.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)
    return path, installed


@app.command()
def serve(project: Path = ProjectOption,
          http: Optional[str] = typer.Option(None, "--http", metavar="HOST:PORT",
                                             help="Serve streamable HTTP at HOST:PORT (or PORT on 127.0.0.1) "
                                                  "instead of stdio."),
          token: Optional[str] = typer.Option(None, "--token", envvar="IMPROVER_MCP_TOKEN", show_envvar=True,
                                              help="Bearer token every HTTP request must carry (required off loopback)."),
          allow_host: Optional[list[str]] = typer.Option(None, "--allow-host", metavar="NAME[:PORT]",
                                                         help="Host header clients may use (required off loopback; "
                                                              "repeat, or IMPROVER_MCP_ALLOWED_HOSTS=a,b).")):
    """Serve improver's tools over MCP (stdio by default) for Claude Code and other agents."""
    from improver.mcp import build_server, parse_address
    from improver.mcp.http import HOSTS_ENV, security, serve_http

    if http is None:
        build_server(project).run()  # starts anywhere: without improver.yaml its tools say how to make one
        return
    host, port = parse_address(http)
    hosts = list(allow_host or []) or [h.strip() for h in os.environ.get(HOSTS_ENV, "").split(",") if h.strip()]
    security(host, port, token, hosts)  # refuse before loading anything
    server = build_server(project)
    print(f"improver MCP server on http://{host}:{port}/mcp" + (" (bearer token required)" if token else ""),
          file=sys.stderr, flush=True)
    serve_http(server, host, port, token, hosts)

@app.command("install-claude")
def install_claude_command(project: Path = ProjectOption):
    """Register the MCP server in the project's .mcp.json and install the skills into .claude/skills/."""
    path, skills = install_claude(project)
    console.print(f"Registered the improver MCP server in {path} (no machine paths: safe to commit).")
    for skill in skills:
        console.print(f"Installed skill {skill.parent.name} in {skill.parent}")
    if not on_path():
        console.print(f"[yellow]note:[/] `improver` is not on PATH here; start Claude Code from a shell where it is "
                      f"(e.g. after `source {Path(sys.executable).parent}/activate`).")
    console.print("Start Claude Code in the project folder and approve the 'improver' server when asked.")
