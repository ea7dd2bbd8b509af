"""`improver install-claude`: the MCP server lands in the project's .mcp.json (other
servers kept) and the skills in .claude/skills/."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

from improver.cli import app
from improver.cli.claude import SKILLS
from improver.demo import make_demo_project

ROOT = Path(__file__).resolve().parent.parent


def test_install_claude_registers_the_server_and_installs_the_skills(tmp_path):
    project = make_demo_project(tmp_path / "demo", n=10)
    (project / ".mcp.json").write_text(json.dumps({"mcpServers": {"other": {"command": "other-server"}}}))
    for _ in range(2):  # installing again refreshes, it does not duplicate
        result = CliRunner().invoke(app, ["install-claude", "--project", str(project)])
        assert result.exit_code == 0, result.output
    servers = json.loads((project / ".mcp.json").read_text())["mcpServers"]
    assert servers["other"] == {"command": "other-server"}
    assert servers["improver"] == {"command": "improver", "args": ["serve"]}  # no machine paths: committable
    for name in SKILLS:
        installed = project / ".claude" / "skills" / name / "SKILL.md"
        assert installed.read_text() == (ROOT / "skills" / name / "SKILL.md").read_text()


def test_install_claude_refuses_a_broken_mcp_json(tmp_path):
    project = make_demo_project(tmp_path / "demo", n=10)
    (project / ".mcp.json").write_text("{not json")
    result = CliRunner().invoke(app, ["install-claude", "--project", str(project)])
    assert result.exit_code != 0 and "not valid JSON" in str(result.exception)
    assert (project / ".mcp.json").read_text() == "{not json"
