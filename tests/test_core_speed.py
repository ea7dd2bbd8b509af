"""Speed by construction: what the hot paths avoid (imports, re-reads); timings live in bench/."""
from __future__ import annotations

import subprocess
import sys

MINE_TAGGED_ONLY = """
import sys
from improver.mining import mine
from improver.models import ReviewedSession
sessions = [ReviewedSession(session_id=f"s{i}", case={"vendor": "AB"[i % 2], "amount": 100.0 * i}, agent_decision="approve",
                            human_decision="reject" if i % 2 else "approve", human_reasoning="over budget",
                            precedent="budget" if i % 2 else "agree") for i in range(40)]
result = mine(sessions, min_evidence=3)
assert result.precedents, result
print("sklearn" in sys.modules)
"""


def test_mining_without_untagged_notes_does_not_import_scikit_learn():
    out = subprocess.run([sys.executable, "-c", MINE_TAGGED_ONLY], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
