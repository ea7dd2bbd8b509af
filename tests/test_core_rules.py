"""Rule scoring at small samples: a rule must explain more of its group than it contradicts,
and its precision is shrunk toward the parent's agreement before it is judged."""
import numpy as np
import pytest

from improver.features import Test as FeatureTest, count, pack, unpack
from improver.rules import RuleInducer


def rows(n: int, members) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[list(members)] = True
    return pack(mask)


def test_a_broad_condition_that_contradicts_more_reviews_than_it_explains_is_no_rule():
    # 40 sessions; the only test holds on 30 of them, where the reviewers approved 22 and rejected 8.
    # The group to explain is 3 approvals (a precedent's noise flips): precision 22/30 would pass alone.
    broad = FeatureTest("amount", "lt", 19000, rows(40, range(30)))
    inducer = RuleInducer([broad], 40)
    assert inducer.induce(rows(40, range(3)), rows(40, range(22)), min_support=3) is None
    # the same condition explaining a group larger than what it contradicts is a rule
    assert inducer.induce(rows(40, range(12)), rows(40, range(22)), min_support=3) is not None


def test_precision_is_shrunk_toward_the_parents_agreement():
    # two sessions, both decided as the rule says: enough where the agent already agrees with
    # the reviewers nine times in ten, not where it agrees one time in ten
    both = FeatureTest("vendor", "eq", "Acme", rows(40, [0, 1]))
    group, correct = rows(40, [0, 1]), rows(40, [0, 1])
    assert RuleInducer([both], 40, prior=0.9).induce(group, correct, min_support=2) is not None
    assert RuleInducer([both], 40, prior=0.1).induce(group, correct, min_support=2) is None


@pytest.mark.parametrize("split_words", [None, 0])  # large matrices are counted in two halves at once
def test_test_counts_equal_the_bitset_popcount_for_small_large_and_middling_row_sets(split_words, monkeypatch):
    from improver.features import TestCounts

    if split_words is not None:
        monkeypatch.setattr(TestCounts, "SPLIT_WORDS", split_words)
    rng = np.random.default_rng(3)
    rows = 5000
    matrix = np.stack([pack(rng.random(rows) < share) for share in (0.01, 0.2, 0.5, 0.9, 1.0)])
    counts = TestCounts(matrix, rows)
    for share in (0.0, 0.001, 0.03, 0.3, 0.97, 0.999, 1.0):  # row by row, all-but-a-few, bitsets
        within = pack(rng.random(rows) < share)
        expected = np.bitwise_count(matrix & within).sum(axis=1)
        assert counts(within).tolist() == expected.tolist()
        assert counts(within.copy()).tolist() == expected.tolist()  # asked again: remembered, same answer


def test_a_forked_child_counts_a_large_matrix_in_halves_as_its_parent_did(monkeypatch):
    import multiprocessing

    from improver.features import TestCounts

    monkeypatch.setattr(TestCounts, "SPLIT_WORDS", 0)
    rng = np.random.default_rng(5)
    matrix = np.stack([pack(rng.random(3000) < share) for share in (0.1, 0.4, 0.7)])
    within = pack(rng.random(3000) < 0.5)
    expected = np.bitwise_count(matrix & within).sum(axis=1).tolist()
    assert TestCounts(matrix, 3000)(within).tolist() == expected  # the parent's helper thread now runs
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=_count_in_child, args=(matrix, within, answers))
    child.start()
    child.join(timeout=60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the forked child waited for a helper thread it does not have"
    assert answers.get(timeout=5) == expected


def _count_in_child(matrix, within, answers):
    from improver.features import TestCounts

    TestCounts.SPLIT_WORDS = 0
    answers.put(TestCounts(matrix, 3000)(within).tolist())


def test_a_rules_marginal_gain_counts_the_rows_it_decides_first_against_the_next_rule_or_the_agent():
    from improver.mining import marginal_gains

    human = np.array(["reject", "reject", "approve", "reject", "approve", "reject"], dtype=object)
    agent = np.array(["approve"] * 6, dtype=object)
    matched = np.array([[1, 1, 1, 0, 0, 0],   # reject: right on rows 0 and 1, wrong on 2
                        [0, 1, 0, 1, 0, 0],   # reject: decides row 3 first (row 1 is the first rule's)
                        [0, 0, 0, 1, 1, 1]],  # approve: right on row 4, as the agent is; wrong on 5, as the agent is
                       dtype=bool)
    # without the first rule, row 0 falls to the agent (-1), row 1 to the second rule (0), row 2 to the agent (+1)
    assert marginal_gains(matched, ["reject", "reject", "approve"], agent, human) == [0, 1, 0]


def test_a_set_test_refines_a_rule_but_never_starts_one():
    # 40 sessions: 10 Support tickets, urgent or emergency in 0-7 (approved), normal in 8-9 (rejected)
    department = FeatureTest("department", "eq", "Support", rows(40, range(10)))
    urgent = FeatureTest("urgency", "in", ["emergency", "urgent"], rows(40, list(range(8)) + list(range(20, 28))))
    group, correct = rows(40, range(8)), rows(40, list(range(8)) + list(range(10, 40)))
    rule = RuleInducer([department, urgent], 40).induce(group, correct, min_support=3)
    assert rule is not None and rule.condition() == {"department": {"eq": "Support"},
                                                     "urgency": {"in": ["emergency", "urgent"]}}
    # alone, the set test is no rule, however well it covers the group
    assert RuleInducer([urgent], 40).induce(group, correct, min_support=3) is None


def test_a_refining_test_must_take_out_more_than_one_contradicting_session():
    # the department rule covers 10 approvals and one rejection (a noisy review, row 10); a test
    # that only removes that one row is not added: one row is noise, not a condition
    department = FeatureTest("department", "eq", "Support", rows(40, range(11)))
    amount = FeatureTest("amount", "lt", 900, rows(40, list(range(10)) + list(range(30, 40))))
    group, correct = rows(40, range(10)), rows(40, list(range(10)) + list(range(12, 30)))
    rule = RuleInducer([department, amount], 40).induce(group, correct, min_support=3)
    assert rule is not None and rule.condition() == {"department": {"eq": "Support"}}
    # two contradicting rows removed (10 and 11) is a real refinement
    department = FeatureTest("department", "eq", "Support", rows(40, range(12)))
    rule = RuleInducer([department, amount], 40).induce(group, correct, min_support=3)
    assert rule is not None and rule.condition() == {"amount": {"lt": 900}, "department": {"eq": "Support"}}


def test_of_equally_good_rules_the_one_the_reviewers_notes_name_wins():
    # 40 sessions; requests 0-1 were approved against the agent. Three tests hold on exactly those two:
    # a department, and two words of their justifications. The notes give "deliverable" as the reason.
    department = FeatureTest("department", "eq", "Marketing", rows(40, [0, 1]))
    board = FeatureTest("justification", "contains", "board", rows(40, [0, 1]))
    deliverable = FeatureTest("justification", "contains", "deliverable", rows(40, [0, 1]))
    inducer = RuleInducer([department, board, deliverable], 40, prior=0.9)
    group = correct = rows(40, [0, 1])
    notes = ["Approve: the justification names the deliverable.", "Named deliverable, fixed scope. Approve."]
    rule = inducer.induce(group, correct, min_support=2, notes=notes)
    assert rule is not None and rule.condition() == {"justification": {"contains": "deliverable"}}
    # without notes the plainest test wins, as before: a structured field over a keyword
    assert inducer.induce(group, correct, min_support=2).condition() == {"department": {"eq": "Marketing"}}


def test_a_rule_is_narrowed_by_a_test_the_notes_name_that_keeps_every_row_it_explains():
    # 40 sessions: "campaign" holds on 0-5 (Marketing and Sales, rejected: the group) and on 6 (Security, approved:
    # one request, too few for the search to refine away). The notes name Marketing and Sales.
    campaign = FeatureTest("justification", "contains", "campaign", rows(40, range(7)))
    teams = FeatureTest("department", "in", ["Marketing", "Sales"], rows(40, list(range(6)) + list(range(20, 30))))
    inducer = RuleInducer([campaign, teams], 40, prior=0.6)
    group, correct = rows(40, range(6)), rows(40, list(range(6)) + list(range(20, 30)))
    notes = ["Marketing is panic-buying a single-campaign tool again. Reject.", "Classic Sales panic buy. Reject."]
    rule = inducer.induce(group, correct, min_support=3, notes=notes)
    assert rule.condition() == {"department": {"in": ["Marketing", "Sales"]}, "justification": {"contains": "campaign"}}
    assert (rule.covered, rule.positives, rule.correct) == (6, 6, 6)
    # without notes naming them, the broad rule stands
    assert inducer.induce(group, correct, min_support=3).condition() == {"justification": {"contains": "campaign"}}


def test_a_learned_threshold_lies_at_the_roundest_number_between_the_reviews_on_either_side():
    from improver.features import roundest_between

    assert roundest_between(40, 84) == 60  # 50, 60, 70, 80 hold one digit; 60 is nearest the middle
    assert roundest_between(19_800, 20_500) == 20_000
    assert roundest_between(58, 63) == 60
    assert roundest_between(0.31, 0.34) == 0.32
    assert roundest_between(3, 4) == 4  # "lt 4" still keeps 3 and leaves 4 out
    assert roundest_between(-5, 3) == 0

    # 40 reviewed posts: accounts aged 0-38 days were removed against the agent (rows 0-19), those
    # aged 84 days and more were kept (rows 20-39). The quantile cut that starts the rule is 41 days.
    ages = np.array([2.0 * i for i in range(20)] + [84.0 + 10 * i for i in range(20)])
    young = FeatureTest("account_age_days", "lt", 41.0, pack(ages < 41))
    group = rows(40, range(20))
    rule = RuleInducer([young], 40, numbers={"account_age_days": ages}).induce(group, group, min_support=3)
    assert rule.condition() == {"account_age_days": {"lt": 60}}
    assert count(rule.bits) == 20 and (unpack(rule.tests[0].bits, 40) == (ages < 60)).all()
    # a cut the project declared (a band edge) stays where it was declared
    declared = RuleInducer([young], 40, numbers={"account_age_days": ages}, fixed_cuts={"account_age_days": [41]})
    assert declared.induce(group, group, min_support=3).condition() == {"account_age_days": {"lt": 41}}
    # with no reviewed row on the far side of the cut (no age given there) there is no gap to place it in
    unknown = np.where(ages < 41, ages, np.nan)
    lone = RuleInducer([young], 40, numbers={"account_age_days": unknown})
    assert lone.induce(group, group, min_support=3).condition() == {"account_age_days": {"lt": 41}}
