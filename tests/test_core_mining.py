"""Mining: a precedent's minority decisions become exceptions inside its rule."""
from __future__ import annotations

from improver.mining import mine
from improver.models import ReviewedSession

VENDORS = ("Acme", "Bolt", "Cora", "Dyne")


def review(sid: str, vendor: str, amount: float, agent: str, human: str, precedent: str | None = None) -> ReviewedSession:
    return ReviewedSession(session_id=sid, case={"vendor": vendor, "amount": amount}, agent_decision=agent,
                           human_decision=human, human_reasoning=f"{precedent or 'agree'} {human}", precedent=precedent)


def background() -> list[ReviewedSession]:
    """Agreements on other vendors at every amount."""
    return [review(f"b{i}", VENDORS[i % 4], 1000.0 * (1 + i % 40), "approve", "approve") for i in range(60)]


def consolidation(rejects: int, approves: int) -> list[ReviewedSession]:
    """A tagged precedent: the reviewer rejects Quantum above $5,000 and lets small ones through."""
    big = [review(f"q{i}", "Quantum", 8000.0 + 3000 * i, "flag", "reject", "consolidation") for i in range(rejects)]
    small = [review(f"s{i}", "Quantum", 1500.0 + 1000 * i, "flag", "approve", "consolidation") for i in range(approves)]
    return big + small


def test_a_minority_decision_of_a_precedent_becomes_an_exception_before_its_rule():
    result = mine(background() + consolidation(rejects=2, approves=1), min_evidence=3, entity_fields=["vendor"])
    names = [p.name for p in result.proposable]
    assert names.index("consolidation--approve") < names.index("consolidation")
    rule = next(p for p in result.precedents if p.name == "consolidation")
    exception = next(p for p in result.precedents if p.name == "consolidation--approve")
    assert rule.condition == {"vendor": {"eq": "Quantum"}} and rule.decision == "reject"
    assert exception.condition["vendor"] == {"eq": "Quantum"} and "lt" in exception.condition["amount"]
    assert exception.decision == "approve" and exception.evidence_sessions == ["s0"]


def test_a_precedent_with_fewer_evidence_sessions_than_the_minimum_stays_weak():
    result = mine(background() + consolidation(rejects=1, approves=1), min_evidence=3, entity_fields=["vendor"])
    assert not [p for p in result.proposable if p.name.startswith("consolidation")]
    assert any(p.weak and p.name == "consolidation" for p in result.precedents)
