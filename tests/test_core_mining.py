"""Mining: exceptions inside a precedent's rule, the evidence minimum, and runs that repeat exactly."""
from __future__ import annotations

import os
import subprocess
import sys

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


def test_a_rule_and_its_exceptions_are_proposed_when_they_hold_the_evidence_minimum_together():
    # two rejects and two small approvals: neither decision has three sessions, the precedent has four
    from improver.propose import build_proposals

    result = mine(background() + consolidation(rejects=2, approves=2), min_evidence=3, entity_fields=["vendor"])
    rule = next(p for p in result.precedents if p.name == "consolidation")
    assert rule.support == 2 and rule.evidence == 4
    proposed = {p.precedent: p for p in build_proposals(result, ["vendor"], set(), 1, min_evidence=3)}
    assert set(proposed) == {"consolidation", "consolidation--approve"}
    assert proposed["consolidation"].when == {"vendor": {"eq": "Quantum"}}
    # one approval is a noisy review, not an exception: the rule stands on its own evidence only
    result = mine(background() + consolidation(rejects=3, approves=1), min_evidence=3, entity_fields=["vendor"])
    proposed = {p.precedent for p in build_proposals(result, ["vendor"], set(), 1, min_evidence=3)}
    assert proposed == {"consolidation"}


def test_an_untagged_note_joins_the_precedent_whose_notes_it_reads_like_though_they_are_of_two_kinds():
    # the tagged notes say "small ones pass" three times and "reject" once; an untagged reject reads
    # like the one reject note, far from the notes' centre, and still joins the precedent
    notes = ["Vendor consolidation directive applies, but at $1,200 this one-off is too small to matter. Approve.",
             "CFO consolidation directive noted; $900 with Quantum is small enough to allow once. Approve.",
             "Vendor consolidation directive applies, but at $3,400 this one-off is too small to matter. Approve.",
             "CFO Q2 directive: consolidate to one vendor per category; software already has Nimbus. Reject."]
    sessions = background() + [
        review(f"t{i}", "Quantum", 1200.0 + i, "flag", "approve" if i < 3 else "reject", "consolidation")
        for i in range(4)]
    for session, note in zip(sessions[-4:], notes):
        session.human_reasoning = note
    untagged = review("u0", "Quantum", 9000.0, "flag", "reject")
    untagged.human_reasoning = ("Reject per the CFO's vendor consolidation directive: we already have a preferred "
                                "security vendor (Apex).")
    result = mine(sessions + [untagged], min_evidence=3, entity_fields=["vendor"])
    assert next(p for p in result.precedents if p.name == "consolidation").inferred_from_text == 1


SANDBAG_NOTES = ("Engineering sandbags estimates by ~30%; real spend of about {big} crosses the $5,000 tier. Needs manager sign-off.",
                 "Flag: Engineering quotes run ~30% low, so {amount} is really about {big}, past the $5,000 tier; manager sign-off.",
                 "Sandbagged Engineering estimate: add 30% and it is over $5,000. Needs manager sign-off.")


def test_untagged_notes_in_several_wordings_that_name_the_same_case_value_make_one_text_cluster():
    # one piece of reviewer knowledge in three reasoning templates, two sessions each: each wording's
    # cluster is short of the evidence minimum, the knowledge together is not
    sessions = [ReviewedSession(session_id=f"b{i}", case={"department": ("Sales", "Engineering", "Marketing")[i % 3],
                                                          "amount": 1000.0 * (1 + i % 40)},
                                agent_decision="approve", human_decision="approve", human_reasoning="Fine, approve.")
                for i in range(60)]
    for i in range(6):
        amount = 4000.0 + 150 * i
        note = SANDBAG_NOTES[i % 3].format(amount=f"${amount:,.0f}", big=f"${amount * 1.3:,.0f}")
        sessions.append(ReviewedSession(session_id=f"e{i}", case={"department": "Engineering", "amount": amount},
                                        agent_decision="approve", human_decision="flag", human_reasoning=note))
    result = mine(sessions, min_evidence=3)
    clusters = [p for p in result.precedents if p.source == "text-cluster"]
    assert [p.group_size for p in clusters] == [6]
    assert clusters[0].decision == "flag" and not clusters[0].weak


MINE_THE_DEMO = """
import json, sys, tempfile
from pathlib import Path
from improver.demo import make_demo_project
from improver.workspace import Workspace
with tempfile.TemporaryDirectory() as folder:
    project = make_demo_project(Path(folder) / "p", n=1000, seed=1)
    ws = Workspace(project)
    ws.ingest(str(project / "traces.jsonl"))
    result = ws.mine(ws.baseline())
    print(json.dumps([[p.name, p.condition, p.decision] for p in result.precedents]))
"""


def test_mining_gives_the_same_precedents_whatever_the_string_hash_seed():
    runs = [subprocess.run([sys.executable, "-c", MINE_THE_DEMO], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")]
    assert runs[0] and runs[0] == runs[1] == runs[2]


def test_a_groups_kept_rules_are_numbered_from_its_own_name_whatever_the_replay_drops(tmp_path):
    from improver.demo import make_demo_project
    from improver.workspace import Workspace
    project = make_demo_project(tmp_path / "p", n=60)  # marketing-panic-buy's first rule adds nothing here
    ws = Workspace(project)
    ws.ingest(str(project / "traces.jsonl"))
    names = [p.name for p in ws.mine(ws.baseline()).precedents]
    assert "marketing-panic-buy" in names
    for name in names:
        base, _, number = name.rpartition("-")
        if number.isdigit():
            assert (base if number == "2" else f"{base}-{int(number) - 1}") in names, names


def test_a_word_the_reviewers_notes_give_as_the_reason_is_a_test_from_two_requests():
    # Quantum requests are rejected, but two whose justification names a deliverable are approved, and the
    # notes say so. "deliverable" is in two justifications only, under the evidence minimum of three rows a
    # test needs; named by the notes on those disagreements, it is a test and explains the exception.
    def quantum(sid, amount, justification, human, note):
        return ReviewedSession(session_id=sid, case={"vendor": "Quantum", "amount": amount, "justification": justification},
                               agent_decision="flag", human_decision=human, human_reasoning=note,
                               precedent="quantum-overrun")
    texts = ["Quarterly analytics for the sales team and the board.", "Platform seats for the analytics group, renewal.",
             "Connectors for the warehouse, analytics board pack."]
    sessions = [ReviewedSession(session_id=s.session_id, case={**s.case, "justification": texts[i % 3]},
                                agent_decision=s.agent_decision, human_decision=s.human_decision,
                                human_reasoning=s.human_reasoning) for i, s in enumerate(background())]
    sessions += [quantum(f"q{i}", 2000.0 + 7000 * i, texts[i % 3], "reject", "Quantum quotes overrun. Reject.")
                 for i in range(6)]
    sessions += [quantum("d0", 9000.0, "Connectors; deliverable: churn dashboard for the board.", "approve",
                         "Quantum overrun risk is fine here: the justification names the deliverable. Approve."),
                 quantum("d1", 23000.0, "Seats tied to a single deliverable for the analytics group.", "approve",
                         "Approve: Quantum with a named deliverable and fixed scope.")]
    result = mine(sessions, min_evidence=3, entity_fields=["vendor"])
    exception = next(p for p in result.proposable if p.name == "quantum-overrun--approve")
    assert exception.condition == {"justification": {"contains": "deliverable"}, "vendor": {"eq": "Quantum"}}
    # a word the notes do not use still needs three requests
    from improver.features import build_tests

    tests = build_tests([s.case for s in sessions], min_count=3, named=frozenset({"churn"}), named_min_count=2)
    words = {t.value for t in tests if t.op == "contains"}
    assert "deliverable" not in words and "platform" in words


def test_a_decision_with_under_half_the_sessions_of_its_precedents_main_one_is_an_exception():
    # eight rejects; three approvals: two small ones (the real exception) and a noisy flip among the big
    # rejects. As a rule of its own the approvals had to be covered three at a time, flip included.
    flip = review("f0", "Quantum", 20000.0, "flag", "approve", "consolidation")
    result = mine(background() + consolidation(rejects=8, approves=2) + [flip], min_evidence=3, entity_fields=["vendor"])
    exception = next(p for p in result.proposable if p.name == "consolidation--approve")
    assert exception.condition["vendor"] == {"eq": "Quantum"} and exception.condition["amount"]["lt"] <= 8000
    assert exception.evidence_sessions == ["s0", "s1"]
    assert next(p for p in result.proposable if p.name == "consolidation").condition == {"vendor": {"eq": "Quantum"}}


def test_two_of_a_large_groups_many_noisy_reviews_sharing_a_chance_value_are_no_exception():
    # 80 Quantum rejects and 8 noisy reviews among them that keep the agent's flag; two of those share a date that seven other
    # sessions have too. The two are a chance coincidence among many outliers, and their notes name
    # nothing of the date: no exception. The same two among few outliers still make one.
    def dated(session: ReviewedSession, day: str) -> ReviewedSession:
        session.case["submitted"] = day
        return session

    days = [f"2026-04-{d:02d}" for d in range(1, 29)]
    others = [dated(s, "2026-05-01" if i < 7 else days[i % 28]) for i, s in enumerate(background())]
    rejects = [dated(review(f"q{i}", "Quantum", 8000.0 + 37 * i, "flag", "reject", "consolidation"), days[i % 28])
               for i in range(80)]
    flips = [dated(review(f"f{i}", "Quantum", 8000.0 + 37 * (10 * i + 3), "flag", "flag", "consolidation"),
                   "2026-05-01" if i < 2 else days[(10 * i + 5) % 28]) for i in range(8)]
    result = mine(others + rejects + flips, min_evidence=3, entity_fields=["vendor"])
    assert "consolidation" in [p.name for p in result.proposable]
    assert not any(p.name == "consolidation--flag" for p in result.proposable)
    few = mine(others + rejects[:8] + flips[:2], min_evidence=3, entity_fields=["vendor"])
    exception = next(p for p in few.proposable if p.name == "consolidation--flag")
    assert exception.condition["submitted"] == {"eq": "2026-05-01"}


def test_note_vectors_and_clusters_are_those_scikit_learn_computes():
    """improver.text computes TF-IDF, the randomized SVD and the average-linkage cut itself (scikit-learn
    costs over a second to import): value for value what scikit-learn gives, on a few hundred notes
    with repeated phrasings, on a set wider than it is long (the SVD's transposed path), and for
    notes assigned to tagged precedents."""
    import random

    from sklearn.cluster import AgglomerativeClustering
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    from improver import text
    from improver.features import STOPWORDS

    def vectorizer():
        return TfidfVectorizer(ngram_range=(1, 2), stop_words=sorted(STOPWORDS), sublinear_tf=True,
                               token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")

    rng = random.Random(3)
    vocabulary = ("vendor late invoice budget approve reject security review contract renewal urgent customer "
                  "refund crypto giveaway account spam login outage manager sign-off missing exceeded").split()
    long_set = sorted({" ".join(rng.choice(vocabulary) for _ in range(rng.randint(2, 12))) for _ in range(400)})
    wide_set = sorted({" ".join(rng.choice(vocabulary) + rng.choice(vocabulary) for _ in range(9)) for _ in range(20)})
    for notes, seed in ((long_set, 0), (wide_set, 4)):
        ours, theirs = text.Tfidf(notes).fitted, vectorizer().fit_transform(notes)
        assert (ours.indptr == theirs.indptr).all() and (ours.indices == theirs.indices).all()
        assert (ours.data == theirs.data).all()
        components = min(50, theirs.shape[1] - 1, len(notes) - 1)
        reduced = text.reduced(ours, components, seed)
        assert (reduced == TruncatedSVD(n_components=components, random_state=seed).fit_transform(theirs)).all()
        points = text._normalise(reduced)
        expected = AgglomerativeClustering(n_clusters=None, distance_threshold=0.7, metric="cosine",
                                           linkage="average").fit_predict(points)
        labels = text.average_linkage_clusters(points, 0.7)
        assert (labels == expected).all() and len(set(labels)) > 5
    tagged = {"late": long_set[:30], "crypto": long_set[30:80]}
    fitted = vectorizer().fit(sorted(set(long_set)))
    tfidf = text.Tfidf(sorted(set(long_set)))
    for name in tagged:
        assert (tfidf.transform(sorted(tagged[name])).mean(axis=0) == fitted.transform(sorted(tagged[name])).mean(axis=0)).all()


def test_a_precedent_in_two_bands_of_a_number_is_learned_as_a_rule_per_band():
    # Engineering's estimates run 30% low: the reviewer flags requests just under each approval tier
    # (5,000 and 50,000), and agrees with the agent's approvals everywhere else, Engineering's too
    def request(sid, department, amount, human="approve", precedent=None):
        return ReviewedSession(session_id=sid, case={"department": department, "amount": amount},
                               agent_decision="approve", human_decision=human, precedent=precedent,
                               human_reasoning="sandbagged estimate, flag" if precedent else "agree")
    everyday = [request(f"e{i}", ("Engineering", "Sales", "Legal")[i % 3], amount)
                for i, amount in enumerate([800.0 * k for k in range(1, 5)] + [6000.0 * k for k in range(1, 7)]
                                           + [36000.0 - 1000 * k for k in range(4)] + [55000.0 + 9000 * k for k in range(6)])]
    everyday += [request(f"o{i}", ("Sales", "Legal")[i % 2], amount)  # other departments inside the bands
                 for i, amount in enumerate([4300.0, 4600.0, 4800.0, 42000.0, 45000.0, 48000.0])]
    everyday += [request(f"t{i}", "Engineering", amount)  # and Engineering's own just past each tier
                 for i, amount in enumerate([3300.0, 5200.0, 38000.0, 52000.0])]
    sandbagged = [request(f"s{i}", "Engineering", amount, "flag-for-review", "sandbag")
                  for i, amount in enumerate([4100.0, 4400.0, 4700.0, 4900.0, 41000.0, 44000.0, 47000.0])]
    result = mine(everyday * 3 + sandbagged, min_evidence=3, bands={"amount": [5000, 50000]}, entity_fields=["department"])
    bands = sorted((p.condition["amount"]["ge"], p.condition["amount"]["lt"]) for p in result.proposable
                   if p.name.startswith("sandbag"))
    assert bands == [(4000.0, 5000.0), (40000.0, 50000.0)], [(p.name, p.condition) for p in result.precedents]
    assert all(p.condition["department"] == {"eq": "Engineering"} for p in result.proposable if p.name.startswith("sandbag"))


def test_a_band_closes_at_the_roundest_number_nearest_its_own_rows():
    # no tier is declared: above requests of up to 4,990 the next reviewed one lies at 12,000, and a
    # person closes the band at 5,000, not at 10,000 (mid-gap, as a one-sided threshold is placed)
    def request(sid, department, amount, human="approve", precedent=None):
        return ReviewedSession(session_id=sid, case={"department": department, "amount": amount},
                               agent_decision="approve", human_decision=human, precedent=precedent,
                               human_reasoning="sandbagged estimate, flag" if precedent else "agree")
    everyday = [request(f"e{i}", "Engineering", amount) for i, amount in enumerate([2500.0, 12000.0, 20000.0, 70000.0])]
    everyday += [request(f"o{i}", ("Sales", "Legal")[i % 2], amount)
                 for i, amount in enumerate([4300.0, 4600.0, 4800.0, 42000.0, 45000.0, 48000.0, 900.0, 90000.0])]
    sandbagged = [request(f"s{i}", "Engineering", amount, "flag-for-review", "sandbag")
                  for i, amount in enumerate([3900.0, 4200.0, 4600.0, 4990.0, 38000.0, 44000.0, 49000.0])]
    result = mine(everyday * 3 + sandbagged, min_evidence=3, entity_fields=["department"])
    bands = sorted((p.condition["amount"]["ge"], p.condition["amount"]["lt"]) for p in result.proposable
                   if p.name.startswith("sandbag"))
    assert bands == [(3000.0, 5000.0), (30000.0, 50000.0)], [(p.name, p.condition) for p in result.precedents]


def test_the_roundest_number_nearest_one_end_of_a_gap():
    from improver.features import roundest_near

    assert roundest_near(4990, 12000, 4990) == 5000  # one digit, as 10,000 is, and nearer the band's rows
    assert roundest_near(2500, 3900, 3900) == 3000
    assert roundest_near(3846, 3900, 3900) == 3900  # no one-digit number between: two digits
    assert roundest_near(40, 84, 84) == 80 and roundest_near(40, 84, 40) == 50
    assert roundest_near(-5, 3, 3) == 0  # across zero: zero, as roundest_between

