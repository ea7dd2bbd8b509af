"""The Claude Code skills and plugin files: they parse, and they name only tools, tool
arguments and commands that exist."""
from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import pytest
import typer.main
import yaml
from mcp import Client

from improver.cli import app
from improver.cli.claude import SKILLS
from improver.demo import make_demo_project
from improver.mcp import build_server

ROOT = Path(__file__).resolve().parent.parent
SKILL_FILES = sorted((ROOT / "skills").glob("*/SKILL.md"))


def frontmatter(path: Path) -> tuple[dict, str]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n"), f"{path} must start with YAML frontmatter"
    _, head, body = text.split("---\n", 2)
    return yaml.safe_load(head), body


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> dict:
    project = make_demo_project(tmp_path_factory.mktemp("skills") / "demo", n=10)

    async def main():
        async with Client(build_server(project)) as client:
            return (await client.list_tools()).tools
    return {t.name: t for t in anyio.run(main)}


def test_every_skill_ships_and_has_name_and_description():
    assert sorted(p.parent.name for p in SKILL_FILES) == sorted(SKILLS)
    for path in SKILL_FILES:
        meta, body = frontmatter(path)
        assert meta["name"] == path.parent.name
        assert 50 < len(meta["description"]) <= 1024 and "Use when" in meta["description"]
        assert body.strip()


@pytest.mark.parametrize("path", SKILL_FILES, ids=lambda p: p.parent.name)
def test_skills_name_only_tools_fields_and_commands_that_exist(path, tools):
    _, body = frontmatter(path)
    fields = {name for tool in tools.values() for schema in (tool.input_schema, tool.output_schema or {})
              for name in schema.get("properties", {})}
    identifiers = set(re.findall(r"`([a-z]+(?:_[a-z]+)+)`", body))
    assert identifiers - set(tools) - fields == set()
    assert identifiers & set(tools), "a skill should drive the MCP tools"
    commands = {c.name for c in typer.main.get_command(app).commands.values()}
    used = set(re.findall(r"`improver ([a-z-]+)", body))
    assert used <= commands, used - commands


@pytest.mark.parametrize("path", SKILL_FILES, ids=lambda p: p.parent.name)
def test_skills_state_the_products_rules(path):
    _, body = frontmatter(path)
    assert "at least 3 sessions" in body and "held-out" in body.lower() and "humans approve" in body.lower()


def test_repository_is_a_claude_code_plugin():
    plugin = json.loads((ROOT / ".claude-plugin" / "plugin.json").read_text())
    assert plugin["name"] == "improver" and plugin["description"]
    server = json.loads((ROOT / ".mcp.json").read_text())["mcpServers"]["improver"]
    assert server["command"] == "improver" and server["args"][0] == "serve"
