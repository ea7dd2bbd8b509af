"""Shared fixtures: a tiny non-procurement project on real files."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))

from phoenix_server import phoenix  # noqa: E402,F401  (one live Phoenix for every test that asks for it)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A support-triage style project: a callable target, a config folder and traces."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "policy.yaml").write_text("escalate_above_minutes: 30\n")
    (tmp_path / "triage_agent.py").write_text(
        "from improver.runtime import load_overlay\n"
        "def decide(case, config_dir):\n"
        "    if case.get('boom'):\n"
        "        raise RuntimeError('cannot triage')\n"
        "    rule = load_overlay(config_dir).match(case)\n"
        "    if rule:\n"
        "        return {'decision': rule.decision, 'confidence': rule.confidence, 'cited': ['rule:' + rule.id]}\n"
        "    return {'decision': 'escalate' if case['minutes'] > 30 else 'resolve', 'confidence': 'high'}\n")
    (tmp_path / "improver.yaml").write_text(
        "target:\n  callable: triage_agent:decide\n  config: config\nentity_fields: [product]\n"
        "bands:\n  minutes: [30]\nholdout: 0.25\n")
    rows = []
    for i in range(80):
        product = ["billing", "login", "search", "api"][i % 4]
        minutes = 10 + (i * 7) % 50
        case = {"ticket": f"T{i:03d}", "product": product, "minutes": minutes,
                "text": "customer cannot log in after password reset" if product == "login" else "general question about invoices"}
        agent = "escalate" if minutes > 30 else "resolve"
        human, precedent, why = agent, None, "Agree."
        if product == "login":
            human, precedent, why = "escalate", "login-outage", "Login problems go to the auth team during the outage."
        rows.append({"type": "decision", "session_id": case["ticket"], "case": case, "decision": agent,
                     "confidence": "high", "reasoning": "by wait time", "cited": ["policy:wait"], "ts": "2026-01-01T00:00:00Z"})
        rows.append({"type": "review", "session_id": case["ticket"], "reviewer": "sam", "decision": human,
                     "reasoning": why, "precedent": precedent, "conditions": [], "ts": "2026-01-02T00:00:00Z"})
    write_jsonl(tmp_path / "traces.jsonl", rows)
    return tmp_path
