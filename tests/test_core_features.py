"""Candidate tests on case fields: set tests on few-valued fields, cut points on mostly-constant numbers."""
from improver.features import build_tests, unpack


def test_a_few_valued_field_gets_set_tests_on_pairs_of_its_values():
    cases = [{"urgency": u} for u in ["low", "normal", "urgent", "emergency"] * 5]
    sets = [t for t in build_tests(cases, min_count=3) if t.op == "in"]
    assert len(sets) == 6 and ["emergency", "urgent"] in [t.value for t in sets]
    pair = next(t for t in sets if t.value == ["emergency", "urgent"])
    assert list(unpack(pair.bits, 20)) == [c["urgency"] in ("urgent", "emergency") for c in cases]


def test_a_field_of_many_values_gets_no_set_tests():
    cases = [{"item": f"item {i % 20}"} for i in range(200)]
    assert not [t for t in build_tests(cases, min_count=3) if t.op == "in"]


def test_a_mostly_zero_number_gets_cut_points_among_its_other_values():
    # 200 cases, 24 of them with a value from 11 to 34: every quantile of the whole column is 0
    cases = [{"increase": 0.0} for _ in range(176)] + [{"increase": float(v)} for v in range(11, 35)]
    cuts = {t.value for t in build_tests(cases, min_count=3) if t.field == "increase" and t.op == "ge"}
    assert any(15 <= c <= 30 for c in cuts)
    # with fewer such values than two bins of the evidence minimum, no extra cuts
    few = [{"increase": 0.0} for _ in range(196)] + [{"increase": float(v)} for v in (12, 20, 28, 33)]
    assert not {t.value for t in build_tests(few, min_count=3) if t.field == "increase" and 1 < t.value < 40}


def test_a_column_gets_the_same_tests_whether_its_cases_share_their_key_order_or_not():
    import random
    from enum import IntEnum

    class Level(IntEnum):  # an int subclass: told value by value, still a number
        LOW, HIGH = 1, 2

    rng = random.Random(3)
    notes = ["renewal with a price increase", "new vendor for the platform", "consolidation of the data tools"]
    cases = [{"vendor": rng.choice("ABCD"), "amount": rng.choice([100, 250.5, 900, None]), "rush": rng.random() < 0.3,
              "note": rng.choice(notes) + f" {rng.choice(['soon', 'later', 'now'])}", "tags": ["x"],
              "meta": {"region": rng.choice(["eu", "us", "apac"])}, "level": rng.choice(list(Level))}
             for _ in range(400)]
    reordered = [dict(reversed(list(case.items()))) if i % 2 else case for i, case in enumerate(cases)]
    found = [(t.field, t.op, t.value, t.bits.tobytes()) for t in build_tests(cases, min_count=3)]
    assert found == [(t.field, t.op, t.value, t.bits.tobytes()) for t in build_tests(reordered, min_count=3)]
    kinds = {(field, op) for field, op, _, _ in found}
    assert {("vendor", "eq"), ("vendor", "in"), ("amount", "ge"), ("rush", "eq"), ("note", "contains"),
            ("meta.region", "eq"), ("level", "ge")} <= kinds and not any(f == "tags" for f, _ in kinds)
