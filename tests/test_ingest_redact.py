"""PII redaction: the corpus of examples and look-alikes, and redaction before storage."""
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from improver.cli import app
from improver.demo import make_demo_project
from improver.errors import ProjectError
from improver.redact import RedactionConfig, Redactor, iban_valid, luhn_valid
from improver.workspace import Workspace

CORPUS = Path(__file__).parent / "data" / "pii_corpus.jsonl"
CORPUS_CONFIG = RedactionConfig(names=["Vera Fye"], patterns={"employee_id": r"\bEMP-\d{6}\b"})


def corpus():
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("row", corpus(), ids=lambda row: row["note"])
def test_corpus_masks_pii_and_leaves_look_alikes(row):
    assert Redactor(CORPUS_CONFIG).text(row["text"]) == row["expected"]


def test_checksums_tell_real_numbers_from_look_alikes():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE89 3704 0044 0532 0130 01")


def test_a_float_whose_digits_pass_luhn_is_not_a_card_but_a_dotted_card_is():
    from improver.leakscan import LeakScan

    redactor = Redactor()
    assert redactor.text("precision: 12.4111111111111111") == "precision: 12.4111111111111111"
    assert redactor.text("card 4111.1111.1111.1111 and 4111111111111111") == "card [CARD] and [CARD]"
    LeakScan().check("precision: 0.4111111111111111\nshare: 3.7828224631000050\n", "manifest.yaml")


def test_redaction_keeps_the_shape_of_the_case_and_counts_by_kind():
    redactor = Redactor()
    case = {"amount": 4200.0, "is_renewal": False, "contact": "ana@shop.example", "tags": ["call +1 415 555 0132"]}
    assert redactor.value(case) == {"amount": 4200.0, "is_renewal": False, "contact": "[EMAIL]", "tags": ["call [PHONE]"]}
    assert redactor.counts == {"email": 1, "phone": 1}


def _project_with_pii(tmp_path: Path, redaction: dict) -> Path:
    project = make_demo_project(tmp_path / "p", n=20)
    data = yaml.safe_load((project / "improver.yaml").read_text())
    data["redaction"] = redaction
    (project / "improver.yaml").write_text(yaml.safe_dump(data))
    lines = (project / "traces.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["case"]["justification"] = "Quote from mia.lopez@vendor.example, card 4111 1111 1111 1111"
    first["reasoning"] += " Call Vera Fye at +44 20 7946 0958."
    lines[0] = json.dumps(first)
    lines.append("{not json, reported by mia.lopez@vendor.example")
    (project / "traces.jsonl").write_text("\n".join(lines) + "\n")
    return project


def test_ingest_masks_pii_before_storage_and_reports_it(tmp_path):
    project = _project_with_pii(tmp_path, {"names": ["Vera Fye"]})
    report = Workspace(project).ingest(str(project / "traces.jsonl"))
    assert report.redacted == {"email": 2, "card": 1, "name": 21, "phone": 1}  # name: also the reviewer, vera.fye
    stored = (project / ".improver" / "traces.sqlite").read_bytes()
    for secret in (b"mia.lopez", b"4111 1111", b"Vera Fye", b"7946"):
        assert secret not in stored
    session = next(s for s in Workspace(project).sessions if "[EMAIL]" in s.case["justification"])
    assert session.case["justification"] == "Quote from [EMAIL], card [CARD]"
    assert isinstance(session.case["amount"], float)
    again = Workspace(project).ingest(str(project / "traces.jsonl"))
    assert again.decisions_new == again.reviews_new == 0  # masking is deterministic, so re-ingest is idempotent


def test_cli_ingest_prints_what_it_masked(tmp_path):
    project = _project_with_pii(tmp_path, {"names": ["Vera Fye"]})
    result = CliRunner().invoke(app, ["ingest", str(project / "traces.jsonl"), "--project", str(project)])
    assert result.exit_code == 0, result.output
    assert "masked: card 1, email 2, name 21, phone 1" in result.output


def test_redaction_can_be_turned_off_and_bad_config_says_how_to_fix(tmp_path):
    project = _project_with_pii(tmp_path, {"enabled": False})
    assert Workspace(project).ingest(str(project / "traces.jsonl")).redacted == {}
    bad = _project_with_pii(tmp_path / "bad", {"patterns": {"broken": "(unclosed"}})
    with pytest.raises(ProjectError, match="redaction.patterns.*not a valid regular expression"):
        Workspace(bad).ingest(str(bad / "traces.jsonl"))


def test_ids_and_keys_get_stable_distinct_keyed_tokens_and_numbers_are_masked():
    from improver.models import DecisionEvent

    redactor = Redactor(key=b"k" * 32)
    event = DecisionEvent(session_id="ana@shop.example", decision="approve", config_version="cfg bob@x.example",
                          case={"contact ana@shop.example": "x", "phone": 4155550132, "card": 4111111111111111,
                                "amount": 4200, "order": 1234567890})
    masked = redactor.event(event)
    again = Redactor(key=b"k" * 32).event(event)
    other = Redactor(key=b"k" * 32).event(event.model_copy(update={"session_id": "bo@shop.example"}))
    assert masked.session_id.startswith("[EMAIL:") and masked.session_id == again.session_id != other.session_id
    assert not any(c.isdigit() for c in masked.session_id)  # tokens hold no digits for a detector to find
    assert list(masked.case) == [masked.session_id.replace("[", "contact [", 1), "phone", "card", "amount", "order"]
    assert masked.case["phone"] == "[PHONE]" and masked.case["card"] == "[CARD]"
    assert masked.case["amount"] == 4200 and masked.case["order"] == 1234567890  # not a valid phone: kept
    assert masked.config_version.startswith("cfg [EMAIL:")


def test_an_event_with_nothing_to_mask_is_returned_as_it_is():
    from improver.models import ReviewEvent

    event = ReviewEvent(session_id="PR-000117", decision="reject", reasoning="Over budget by $3,723 on 2026-06-25.")
    assert Redactor().event(event) is event


def _placed(text: str, other: str) -> list:
    """Events holding ``text`` in one field each (every string field, a case key, a nested case
    value, a list), also between the characters JSON escapes (quote, backslash, tab, newline);
    ``other`` is the reasoning of the rest."""
    from improver.models import DecisionEvent, Quarantined, ReviewEvent

    decision = dict(session_id="s1", decision="approve", case={"item": "laptops"}, reasoning=other)
    review = dict(session_id="s1", decision="reject", reasoning=other)
    out = [DecisionEvent(**{**decision, "session_id": text}), ReviewEvent(**{**review, "session_id": text}),
           Quarantined(source="t.jsonl", line=1, reason="invalid JSON", raw=text)]
    for variant in (text, f'"{text}"', f"\\{text}\\", f"\t{text}\t", f"x\n{text}\ny", text.replace(" ", "\t")):
        for name, value in (("decision", variant), ("reasoning", variant), ("config_version", variant),
                            ("confidence", variant), ("ts", variant), ("cited", [variant]), ("case", {variant: 1}),
                            ("case", {"note": {"deep": [variant]}})):
            out.append(DecisionEvent(**{**decision, name: value}))
        for name, value in (("decision", variant), ("reasoning", variant), ("reviewer", variant), ("precedent", variant),
                            ("confidence", variant), ("ts", variant), ("conditions", [variant])):
            out.append(ReviewEvent(**{**review, name: value}))
    return out


def test_the_event_screen_passes_no_event_that_field_by_field_redaction_would_change(monkeypatch):
    """The one-pass screens over an event and over its case and lists are only shortcuts: whatever
    a string of the event holds that the field-by-field detectors mask, the screens send it to them
    (also when another field, here the reasoning "security keys", already did)."""
    from improver.models import DecisionEvent

    masked_rows = [row for row in corpus() if row["expected"] != row["text"]]
    events = [event for row in masked_rows for other in ("", "security keys") for event in _placed(row["text"], other)]
    events += [DecisionEvent(session_id="s1", decision="approve", case={"phone": 4155550132.0, "big": 10 ** 30})]
    fast = [Redactor(CORPUS_CONFIG.model_copy(update={"names": [], "patterns": {}}), key=b"k" * 32).event(e) for e in events]
    monkeypatch.setattr(Redactor, "_passes", lambda self, value: False)
    slow = [Redactor(CORPUS_CONFIG.model_copy(update={"names": [], "patterns": {}}), key=b"k" * 32).event(e) for e in events]
    assert len(events) > 600 and sum(a is not b for a, b in zip(slow, events)) > 600
    assert [e.model_dump() for e in fast] == [e.model_dump() for e in slow]


# Secrets whose bodies break every 20 characters with - _ . / or + (no long run of letters and digits).
PUNCTUATED_TOKENS = ["glpat-abc-def_ghi-jkl_mnopq", "sk-ant-api03-abc-def-ghi-jkl", "stripe sk_live_abcdefghijklmnop",
                     "ghp_abc_def_ghi_jkl_mno_pqr_stu_vwx_yz0", "AIzaSyA-1234_5678-abcd_efgh-ijkl_mnop-qrs",
                     "Authorization: Bearer abc.def.ghi-jkl_mno.pqr", "aws wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ",
                     "jwt eyJhbGciOiJI.eyJzdWIiOiJ.abcdefgh", "github_pat_abc_def_ghi_jkl_mnopqr", "xoxb-12-34-abcdefghij"]


def test_secrets_whose_bodies_are_broken_by_punctuation_are_screened_and_masked():
    redactor = Redactor()
    for text in PUNCTUATED_TOKENS:
        assert "[SECRET]" in redactor.text(text), text
    for text in ("ask the desk about the risk", "hardware security keys", "a keyboard", "tokens", "an unbearable task"):
        assert not any(__import__("improver.redact", fromlist=["screen"]).screen(text)), text


def test_the_line_screen_gives_the_same_events_as_the_field_by_field_redaction(monkeypatch):
    """Native lines screened as read (``Redactor.lines``) come out exactly as their events do from
    field-by-field redaction: every masked corpus text in every field, written with and without
    JSON escapes, and numbers that only show their digits once parsed (exponent form)."""
    from improver.sources.native import parse_event

    masked = [row["text"] for row in corpus() if row["expected"] != row["text"]] + PUNCTUATED_TOKENS
    events = [e for text in masked for other in ("", "security keys") for e in _placed(text, other)]
    lines = [json.dumps({**e.model_dump(), "type": e.type}, ensure_ascii=ascii)
             for e in events if not hasattr(e, "raw") for ascii in (False, True)]
    lines += ['{"type": "decision", "session_id": "s1", "decision": "approve", "case": {"phone": %s}}' % number
              for number in ("4.155550132e9", "4155550132E0", "41555501.32e2", "4155550132", "1e30", "12.5")]
    lines += ['{"type": "review", "session_id": "s1", "decision": "reject", "reasoning": "%s"}' % text
              for text in ("mail bo\\u0040shop.example", "SSN 078\\u002d05\\u002d1120", "Over budget.")]
    config = CORPUS_CONFIG.model_copy(update={"names": [], "patterns": {}})
    parsed = [parse_event(json.loads(line)) for line in lines]
    fast = list(Redactor(config, key=b"k" * 32).lines((e, line.encode()) for e, line in zip(parsed, lines)))
    monkeypatch.setattr(Redactor, "_passes", lambda self, value: False)
    slow = [Redactor(config, key=b"k" * 32).event(e) for e in parsed]
    assert sum(a is not b for a, b in zip(slow, parsed)) > 600  # most lines hold something to mask
    assert sum(a is b for a, b in zip(fast, parsed)) >= 2  # and the screen lets the clean ones through
    assert [e.model_dump() for e in fast] == [e.model_dump() for e in slow]


def test_lines_screened_together_are_the_lines_screened_one_by_one():
    """flagged_lines over many lines at once, and the leak scan's screen of the distinct pieces
    between quotes, flag exactly the lines might_hold flags on their own, wherever the marks
    sit (inside quotes, before one, at the end of a line) and whatever the neighbours."""
    from improver.leakscan import LeakScan
    from improver.redact import flagged_lines, flagged_pieces, line_passes, might_hold

    texts = [row["text"] for row in corpus()] + PUNCTUATED_TOKENS + ["hardware security keys", "api_key: x", "",
                                                                      "Over budget by $3,723.",
                                                  "the key", "a secret", "token", "pwd", "12345", "67890", "1.2", "3.4"]
    shapes = (("", ""), ('{"reasoning":"', '"}'), ('"', ""), ("", '"'), ('x "', '" key'), ('{"a":"', '","b":["x"]}'))
    lines = [f"{before}{text}{after}" for text in texts for before, after in shapes]
    lines += [f'{a}"{b}' for a, b in zip(texts, texts[1:])]  # marks that a quote splits
    lines = [line for index, line in enumerate(lines * 3) if index % 7 != 3]  # neighbours vary
    expected = [index for index, line in enumerate(lines) if might_hold(line)]
    assert flagged_lines([line.encode() for line in lines], json=False) == set(expected)
    assert LeakScan._screened(lines) == expected
    assert 0 < len(expected) < len(lines)
    json_lines = [line.encode() for line in lines + [r'{"a":"say \"hi\""}', '{"n":1e10}', '{"n":"2.5E+12"}', '{"n":3}']]
    assert flagged_pieces(json_lines) == flagged_lines(json_lines) == {i for i, line in enumerate(json_lines)
                                                                       if not line_passes(line)}
    assert {len(json_lines) - 4, len(json_lines) - 3, len(json_lines) - 2} <= flagged_pieces(json_lines)


def test_the_re2_prefilter_passes_only_batches_the_screen_passes(monkeypatch):
    """With google-re2, flagged_pieces first searches a batch for every mark at once and screens only
    the lines its matches touch: it finds each line the screen flags (corpus texts, punctuated tokens,
    marks split by quotes or at a line's end, random glue of marks and near-marks), so every batch is
    flagged exactly as without it; plain text (not JSON) is searched without the JSON marks."""
    import random

    import improver.redact as redact

    if redact.PREFILTERS[True] is None:
        pytest.skip("google-re2 is not installed (pip install 'agent-improver[fast]')")
    texts = [row["text"] for row in corpus()] + PUNCTUATED_TOKENS + ["the key", "a secret", "1e10", "1.2.3.4", "ab::1"]
    lines = [f'{{"reasoning": "{text}"}}'.encode() for text in texts] + [text.encode() + b"\n" for text in texts]
    glue = [b'"', b'": "', b"\\", b"@", b":", b" ", b"key", b"PASS", b"sk", b"gh", b"a" * 19, b"123456789", b"1.2", b"e",
            b"E", b"-", b".", b"/", b"+", b"(", b"\t", b"token", b"eyJ", b"xox", b"\xc3\xa9", b"_", b"rk", b"glpat", b"b/c+" * 5]
    rng = random.Random(15)
    lines += [b"".join(rng.choice(glue) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    batches = [lines[start:start + size] for size in (5, 64) for start in range(0, len(lines), size)]
    for json in (True, False):
        with_prefilter = [redact.flagged_pieces(batch, json) for batch in batches]
        monkeypatch.setattr(redact, "PREFILTERS", {})
        assert with_prefilter == [redact.flagged_pieces(batch, json) for batch in batches]
        monkeypatch.undo()
        flagged = [line for line in lines if redact.flagged_lines([line], json)]
        assert len(flagged) > 500 and all(redact.PREFILTERS[json].search(line) for line in flagged)
    assert redact.PREFILTERS[False].search(b'say \\"hi\\" 1e10') is None  # no JSON marks in plain text
    clean = [b'{"type": "review", "session_id": "PR-000001", "reasoning": "Over budget by $3,723.", "conditions": []}\n',
             b'{"case": {"amount": 3723.0, "vendor": "Nimbus Software", "submitted": "2026-04-29"}, "cited": ["tier:auto"]}\n']
    assert redact.PREFILTERS[True].search(b"\n".join(clean)) is None and redact.flagged_pieces(clean) == set()  # and passes these


def test_ner_without_its_extra_names_the_install_command(monkeypatch):
    import sys

    from improver.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install '[a-z-]*improver\[ner\]'"):
        Redactor(RedactionConfig(ner=True))
