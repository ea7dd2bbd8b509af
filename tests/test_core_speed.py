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


def test_a_rerun_keeps_its_decisions_instead_of_reading_back_the_file_it_wrote(tiny_project, monkeypatch):
    from improver.experiments import Experiment
    from improver.workspace import Workspace

    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    reads = []
    original = Experiment.decisions
    def reading(self):
        found = original.fget(self)
        if found is not None:
            reads.append(self.id)
        return found
    monkeypatch.setattr(Experiment, "decisions", property(reading))
    baseline = ws.baseline()  # runs, writes decisions.jsonl and scores
    child = ws.propose(baseline, ws.mine(baseline), cycle=1)
    ws.score(child)
    assert reads == []  # only "is it already decided?" (no), never a read-back of what was just written
    assert (child.path / "decisions.jsonl").read_text().splitlines()[0].startswith('{"session_id":')
    fresh = Workspace(tiny_project)
    assert fresh.run(child) == ws.run(child)  # what was kept is what a later command reads
