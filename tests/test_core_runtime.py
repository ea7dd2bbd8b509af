"""The public overlay contract a target agent reads."""
import os

import pytest

from improver.conditions import compile_condition, describe, matches
from improver.runtime import load_overlay


def test_condition_operators_cover_categories_thresholds_and_keywords():
    case = {"vendor": "DataStream", "amount": 4500, "justification": "Campaign-specific plugin", "meta": {"tier": 2}}
    assert matches({"vendor": {"eq": "DataStream"}, "amount": {"ge": 4000, "lt": 5000}}, case)
    assert matches({"justification": {"contains": "campaign"}}, case)
    assert not matches({"justification": {"contains": "camp"}}, case)
    assert matches({"meta.tier": {"in": [1, 2]}}, case)
    assert not matches({"missing": {"eq": 1}}, case)
    assert describe({"amount": {"lt": 5000.0}}) == "amount < 5000"


def test_overlay_first_matching_rule_wins_and_notes_apply_by_entity(tmp_path):
    (tmp_path / "learned_rules.yaml").write_text(
        "rules:\n- {id: a, when: {vendor: {eq: X}}, decision: reject, reason: first}\n"
        "- {id: b, when: {amount: {ge: 0}}, decision: approve}\n")
    (tmp_path / "entity_notes.yaml").write_text("vendor:\n  X: [overruns]\n")
    (tmp_path / "prompt_fragment.md").write_text("Be careful.")
    overlay = load_overlay(tmp_path)
    hit = overlay.match({"vendor": "X", "amount": 3})
    assert (hit.id, hit.decision, hit.confidence, hit.reason) == ("a", "reject", "high", "first")
    assert overlay.match({"vendor": "Y", "amount": 3}).id == "b"
    assert overlay.match({"vendor": "Y"}) is None
    assert overlay.notes_for({"vendor": "X"}) == ["overruns"]
    assert overlay.prompt_fragment == "Be careful."


def test_empty_config_folder_gives_empty_overlay(tmp_path):
    overlay = load_overlay(tmp_path)
    assert overlay.match({"a": 1}) is None and overlay.prompt_fragment == ""


def test_malformed_rules_name_the_file_and_the_fix(tmp_path):
    (tmp_path / "learned_rules.yaml").write_text("rules:\n- {id: a, when: {vendor: {like: X}}, decision: reject}\n")
    with pytest.raises(ValueError, match="unknown operator 'like'.*use one of"):
        load_overlay(tmp_path)


def test_columns_mask_agrees_with_matches_case_by_case():
    from improver.features import Columns

    cases = [{"vendor": v, "amount": a, "note": n, "flag": f, "meta": {"tier": t}}
             for v, a, n, f, t in [("X", 10, "urgent campaign", True, 1), ("Y", 5000.0, "routine", False, 2),
                                   ("X", "n/a", "Campaign-specific", None, 3), ("Z", None, None, True, 1), ("Y", 49999, "", False, 2)]]
    conditions = [{"vendor": {"eq": "X"}}, {"amount": {"ge": 5000}}, {"amount": {"lt": 5000}, "vendor": {"ne": "Z"}},
                  {"note": {"contains": "campaign"}}, {"flag": {"eq": True}}, {"meta.tier": {"in": [1, 3]}},
                  {"vendor": {"not_in": ["X"]}, "amount": {"le": 49999}}, {"missing": {"ne": 1}}]
    for case, mixed in zip(cases, (1, True, 1.0, "1", "0.5")):  # equal under ==, not the same to every operator
        case["mixed"], case["listed"] = mixed, [mixed] if mixed == 1 else mixed
    conditions += [{"mixed": {"eq": 1}}, {"mixed": {"ge": "1"}}, {"mixed": {"lt": 1}}, {"mixed": {"in": [True]}},
                   {"listed": {"ne": "0.5"}}, {"mixed": {"contains": "1"}}]
    columns = Columns(cases)
    for condition in conditions:
        assert columns.mask(condition).tolist() == [matches(condition, c) for c in cases], condition
        assert [compile_condition(condition)(c) for c in cases] == [matches(condition, c) for c in cases], condition
    reordered = Columns([dict(reversed(list(c.items()))) if i % 2 else c for i, c in enumerate(cases)])  # keys in other orders
    assert all(reordered.mask(condition).tolist() == columns.mask(condition).tolist() for condition in conditions)
    kept = columns.test("vendor", "eq", "X")
    assert columns.test("vendor", "eq", "X") is kept and columns.test("mixed", "eq", True) is not columns.test("mixed", "eq", 1)
    with pytest.raises(ValueError):  # remembered for the next stage: no caller can change it
        kept[0] = not kept[0]


def test_overlay_is_reread_when_a_file_changes_even_within_one_timestamp_tick(tmp_path):
    rules = tmp_path / "learned_rules.yaml"
    rules.write_text("rules:\n- {id: a, when: {vendor: {eq: X}}, decision: reject}\n")
    first = load_overlay(tmp_path)
    assert load_overlay(tmp_path) is first  # cached
    stamp = rules.stat()
    rules.write_text("rules:\n- {id: b, when: {vendor: {eq: X}}, decision: accept}\n")  # same size, in place
    os.utime(rules, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # and the same mtime: only the contents differ
    assert load_overlay(tmp_path).match({"vendor": "X"}).id == "b"
    os.utime(rules, ns=(stamp.st_atime_ns, stamp.st_mtime_ns - 10**9))  # settled: a second old
    settled = load_overlay(str(tmp_path))
    assert load_overlay(tmp_path) is settled
    rules.unlink()
    assert load_overlay(tmp_path).match({"vendor": "X"}) is None
    (tmp_path / "prompt_fragment.md").write_text("New.")
    assert load_overlay(tmp_path).prompt_fragment == "New."


def test_an_experiments_config_is_read_once_and_any_other_folder_checked_on_every_call(tmp_path, monkeypatch):
    import improver.runtime as runtime

    rules = "rules:\n- {id: a, when: {vendor: {eq: X}}, decision: reject}\n"
    experiment, k8s = tmp_path / "experiments" / "0002-cycle-1", tmp_path / "deploy"  # k8s: a manifest.yaml, no id
    for folder in (experiment, k8s, tmp_path / "plain"):
        (folder / "config").mkdir(parents=True)
        (folder / "config" / "learned_rules.yaml").write_text(rules)
        if folder != tmp_path / "plain":
            (folder / "manifest.yaml").write_text("id: x\n")
    stamps = []
    monkeypatch.setattr(runtime, "_stamp", lambda paths, stamp=runtime._stamp: stamps.append(paths) or stamp(paths))
    for folder in (experiment, k8s, tmp_path / "plain"):
        first = load_overlay(folder / "config")
        stamps.clear()
        assert load_overlay(folder / "config") is first
        assert bool(stamps) == (folder != experiment), folder


def test_relative_config_folder_follows_the_working_directory(tmp_path, monkeypatch):
    for name, decision in (("one", "reject"), ("two", "accept")):
        (tmp_path / name / "config").mkdir(parents=True)
        (tmp_path / name / "config" / "learned_rules.yaml").write_text(
            f"rules:\n- {{id: r, when: {{vendor: {{eq: X}}}}, decision: {decision}}}\n")
        monkeypatch.chdir(tmp_path / name)
        assert load_overlay("config").match({"vendor": "X"}).decision == decision
