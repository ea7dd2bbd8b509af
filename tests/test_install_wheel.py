"""improver as a new user gets it: the wheel built from this repository, installed into a fresh
venv outside the repository, then demo, init → own decide() → ingest → cycle, install-claude and
serve, all run from there. The wheel is built and installed offline: its dependencies come from
this test environment's site-packages through a .pth file, so only improver itself is new."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent

USER_AGENT = '''"""A new user's own agent: approves everything under its spending limit."""
from pathlib import Path

from improver.runtime import load_overlay


def decide(case, config_dir):
    rule = load_overlay(config_dir).match(case)
    if rule:
        return {"decision": rule.decision, "confidence": rule.confidence, "cited": [f"rule:{rule.id}"]}
    limit = float((Path(config_dir) / "limit.txt").read_text())
    return {"decision": "approve" if case["amount"] < limit else "reject", "confidence": "high"}
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv holding only the built wheel (its dependencies are this environment's)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"  # a clean copy: an in-tree build/ folder would carry stale files into the wheel
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__",
                                                                "experiments", "improver-demo", "node_modules"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(base / "dist"), str(source)], capture_output=True, text=True, cwd=base)
    assert build.returncode == 0, build.stderr
    assert "License classifiers" not in build.stderr and "project.license" not in build.stderr
    [wheel] = (base / "dist").glob("agent_improver-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                              "--no-index", str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    return venv


def improver(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run([str(venv / "bin" / "improver"), *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def write_user_traces(path: Path, n: int = 60) -> None:
    """A reviewed agent: the human rejects every Acme request the agent approved."""
    rng = random.Random(3)
    with path.open("w") as out:
        for i in range(n):
            case = {"request": f"R-{i:03d}", "vendor": rng.choice(["Acme", "Globex", "Initech"]),
                    "amount": rng.randrange(100, 9000)}
            agent = "approve" if case["amount"] < 8000 else "reject"
            human = "reject" if case["vendor"] == "Acme" else agent
            out.write(json.dumps({"type": "decision", "session_id": case["request"], "case": case,
                                  "decision": agent, "confidence": "high"}) + "\n")
            out.write(json.dumps({"type": "review", "session_id": case["request"], "reviewer": "dana", "decision": human,
                                  "reasoning": "Acme overran its last contract: reject" if human != agent else "fine",
                                  "precedent": "acme-overrun" if human != agent else None}) + "\n")


def test_the_wheel_carries_the_examples_and_skills_and_the_demo_runs(installed, tmp_path):
    done = improver(installed, tmp_path, "demo", "--dir", "demo", "--requests", "20", "--max-cycles", "1")
    assert done.returncode == 0, done.stderr
    assert "Stopped:" in done.stdout and (tmp_path / "demo" / "experiments").is_dir()


def test_from_install_to_a_first_scored_cycle_on_your_own_agent(installed, tmp_path):
    project = tmp_path / "my-agent"
    project.mkdir()
    write_user_traces(project / "traces.jsonl")
    done = improver(installed, project, "init", "--traces", "traces.jsonl")
    assert done.returncode == 0, done.stderr
    assert ".improver/" in (project / ".gitignore").read_text()
    (project / "my_agent.py").write_text(USER_AGENT)
    (project / "config" / "limit.txt").write_text("8000\n")
    done = improver(installed, project, "ingest", "traces.jsonl")
    assert done.returncode == 0 and "60 new reviews" in done.stdout, done.stderr
    done = improver(installed, project, "cycle", "--json")
    assert done.returncode == 0, done.stderr
    history = json.loads(done.stdout)["history"]
    assert history[0]["heldout"] is None  # init keeps no test split: cross-validation scores every review
    assert history[0]["cv"] is not None and history[-1]["cv"] > history[0]["cv"] and history[-1]["cv_change"] > 0


def test_install_claude_and_serve_from_the_installed_wheel(installed, tmp_path):
    done = improver(installed, tmp_path, "install-claude")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / ".mcp.json").read_text())["mcpServers"]["improver"] == {
        "command": "improver", "args": ["serve"]}
    assert (tmp_path / ".claude" / "skills" / "improvement-cycle" / "SKILL.md").exists()
    params = StdioServerParameters(command=str(installed / "bin" / "improver"), args=["serve"], cwd=str(tmp_path))

    async def main():
        async with Client(params, read_timeout_seconds=60) as client:
            before = await client.call_tool("graph_summary", {})
            made = await client.call_tool("init_project", {})
            return before, made
    before, made = anyio.run(main)
    assert before.is_error and "init_project" in before.content[0].text
    assert not made.is_error and "improver.yaml" in made.structured_content["written"]
