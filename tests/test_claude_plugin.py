"""The repository as a Claude Code plugin and marketplace, checked by the real Claude Code CLI
(installed from npm into .tools/ by scripts/setup; skipped only where npm is absent)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLAUDE = ROOT / ".tools" / "node_modules" / ".bin" / "claude"


@pytest.fixture(scope="module")
def claude():
    if not CLAUDE.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is absent, so the Claude Code CLI cannot be installed")
        pytest.fail("the Claude Code CLI is missing from .tools/: run scripts/setup")
    return str(CLAUDE)


def run(claude: str, home: Path, *args: str) -> str:
    env = {**os.environ, "HOME": str(home)}
    done = subprocess.run([claude, *args], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_the_plugin_and_its_marketplace_validate_without_warnings(claude, tmp_path):
    for target in (".", ".claude-plugin/marketplace.json"):
        out = run(claude, tmp_path, "plugin", "validate", target)
        assert "✔ Validation passed" in out and "passed with warnings" not in out, out


def test_the_marketplace_adds_and_the_plugin_installs(claude, tmp_path):
    run(claude, tmp_path, "plugin", "marketplace", "add", str(ROOT))
    assert "Successfully installed" in run(claude, tmp_path, "plugin", "install", "improver@improver")


def test_the_committed_mcp_json_holds_no_machine_paths():
    servers = json.loads((ROOT / ".mcp.json").read_text())["mcpServers"]
    assert servers == {"improver": {"command": "improver", "args": ["serve"]}}
