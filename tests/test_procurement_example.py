"""The bundled procurement example: generator, agent, reviewer and trace simulator."""
from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402

from procurement import agent  # noqa: E402
from procurement.purchase_requests import KINDS, generate_requests, kind_counts  # noqa: E402
from procurement.reviewer import load_knowledge, oracle_rules, review  # noqa: E402
from procurement.simulate import main as simulate_main, write_traces  # noqa: E402

PRECEDENTS = {"marketing-panic-buy", "customer-success-understaffed", "datastream-cost-overrun",
              "vertex-march-outage-goodwill", "cloudbase-cto-relationship", "cfo-vendor-consolidation"}
CASE_FIELDS = {"request_id", "department", "vendor", "category", "item", "amount", "urgency", "justification",
               "is_renewal", "price_increase_pct", "submitted"}


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> tuple[dict, list[dict]]:
    path = tmp_path_factory.mktemp("traces") / "traces.jsonl"
    summary = write_traces(path, n=130, seed=7)
    return summary, [json.loads(line) for line in path.read_text().splitlines()]


def config_copy(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "config"
    shutil.copytree(agent.DEFAULT_CONFIG_DIR, folder)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_baseline_agreement_is_near_the_seed_demo(traces):
    summary, events = traces
    assert summary["sessions"] == 130
    assert 0.50 <= summary["baseline_agreement"] <= 0.58
    decisions = {e["session_id"]: e["decision"] for e in events if e["type"] == "decision"}
    reviews = {e["session_id"]: e["decision"] for e in events if e["type"] == "review"}
    assert sum(decisions[s] == reviews[s] for s in decisions) == summary["agreements"]


def test_every_precedent_appears(traces):
    _, events = traces
    tags = {e["precedent"] for e in events if e["type"] == "review"} - {None}
    assert tags == PRECEDENTS


def test_traces_are_native_jsonl_with_the_contract_fields(traces):
    _, events = traces
    assert len(events) == 260
    decision_keys = {"type", "session_id", "case", "decision", "confidence", "reasoning", "cited", "config_version", "ts"}
    review_keys = {"type", "session_id", "reviewer", "decision", "reasoning", "precedent", "conditions", "ts"}
    for event in events:
        if event["type"] == "decision":
            assert set(event) == decision_keys and set(event["case"]) == CASE_FIELDS
            assert event["config_version"] == "base" and event["session_id"] == event["case"]["request_id"]
        else:
            assert set(event) == review_keys and event["reviewer"] == "vera.fye"
            assert isinstance(event["conditions"], list) and event["reasoning"]
        assert event["decision"] in agent.DECISIONS
    cs = [e for e in events if e["type"] == "review" and e["precedent"] == "customer-success-understaffed"
          and e["decision"] == "approve"]
    assert cs and all(e["conditions"] == ["90-day trial cap", "full vendor approval before any renewal"] for e in cs)


def test_generator_is_deterministic_and_covers_every_branch():
    first, again, other = generate_requests(130, 7), generate_requests(130, 7), generate_requests(130, 8)
    assert first == again and first != other
    assert [c["request_id"] for c in first[:2]] == ["PR-001", "PR-002"] and first[-1]["request_id"] == "PR-130"
    assert all(set(c) == CASE_FIELDS and isinstance(c["amount"], float) for c in first)
    assert all(c["price_increase_pct"] == 0 for c in first if not c["is_renewal"])
    assert set(kind_counts(130).values()) != {0} and all(kind_counts(130)[k.name] == k.weight for k in KINDS)
    results = agent.decide_batch(first, agent.DEFAULT_CONFIG_DIR)
    assert {r["decision"] for r in results} == set(agent.DECISIONS)
    cited = {fact for r in results for fact in r["cited"]}
    for fact in ("tier:auto", "tier:manager", "tier:vp", "budget:over", "policy:renewal-price-increase",
                 "vendor:Insight Partners:suspended", "vendor:Helix Consulting:not_listed"):
        assert fact in cited
    assert "policy:vendor-consolidation" not in cited  # returned by check_policy, ignored by the baseline


def test_decide_matches_decide_batch():
    cases = generate_requests(12, 3)
    batch = agent.decide_batch(cases, agent.DEFAULT_CONFIG_DIR)
    assert [agent.decide(case, agent.DEFAULT_CONFIG_DIR) for case in cases] == batch


def test_learned_rule_and_entity_notes_change_the_agent(tmp_path):
    case = next(c for c in generate_requests(130, 7) if c["vendor"] == "DataStream Analytics"
                and agent.decide(c, agent.DEFAULT_CONFIG_DIR)["decision"] == "approve")
    folder = config_copy(
        tmp_path,
        **{"learned_rules.yaml": 'rules: [{id: x, when: {vendor: {eq: "DataStream Analytics"}}, '
                                 "decision: reject, confidence: high, reason: r}]",
           "entity_notes.yaml": "vendor: {DataStream Analytics: [Quotes inflate about 40%.]}"})
    result = agent.decide(case, folder)
    assert result["decision"] == "reject" and result["confidence"] == "high"
    assert "rule:x" in result["cited"] and "x" in result["reasoning"]
    assert "Quotes inflate about 40%." in result["reasoning"]


def test_oracle_rules_reproduce_the_reviewer(tmp_path, traces):
    """Vera's knowledge, written as learned rules, is her noiseless reviews exactly."""
    knowledge = load_knowledge()
    folder = config_copy(tmp_path, **{"learned_rules.yaml": yaml.safe_dump({"rules": oracle_rules(knowledge)})})
    cases = generate_requests(130, 7)
    baseline = agent.decide_batch(cases, agent.DEFAULT_CONFIG_DIR)
    oracle = agent.decide_batch(cases, folder)
    rng = random.Random(0)
    noiseless = [review(c, r, knowledge, rng, 0.8, 0.0)["decision"] for c, r in zip(cases, baseline)]
    assert [r["decision"] for r in oracle] == noiseless
    _, events = traces  # with inconsistency a perfect learner still clears 93%
    written = [e["decision"] for e in events if e["type"] == "review"]
    assert sum(o["decision"] == w for o, w in zip(oracle, written)) / 130 >= 0.93


class ScriptedModel(BaseChatModel):
    """A chat model that answers every request with the same scripted JSON and keeps the prompts."""

    answer: str
    prompts: list = []

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        self.prompts.append(messages)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.answer))])


def test_model_mode_uses_the_scripted_decision(tmp_path):
    cases = generate_requests(5, 1)
    fake = GenericFakeChatModel(messages=iter([AIMessage(
        content='{"decision": "reject", "confidence": "low", "reasoning": "scripted", "cited": ["policy:budget-limits"]}')]))
    assert agent.decide_with_model(cases[:1], agent.DEFAULT_CONFIG_DIR, fake) == [
        {"decision": "reject", "confidence": "low", "reasoning": "scripted", "cited": ["policy:budget-limits"]}]

    folder = config_copy(tmp_path, **{"prompt_fragment.md": "Cite the Vendor Consolidation Directive by name."})
    model = ScriptedModel(answer='Sure: {"decision": "flag-for-review", "confidence": "medium", "reasoning": "why"}', prompts=[])
    results = agent.decide_with_model(cases, folder, model)
    assert [r["decision"] for r in results] == ["flag-for-review"] * 5
    system, request = model.prompts[0]
    assert "Cite the Vendor Consolidation Directive by name." in system.content
    assert "vendor-consolidation" in request.content and "check_budget returned" in request.content
    garbled = agent.decide_with_model(cases[:1], folder, ScriptedModel(answer="no idea", prompts=[]))
    assert garbled[0]["decision"] == "flag-for-review" and garbled[0]["cited"] == ["model:unparseable"]


def test_model_env_without_langchain_says_what_to_install(monkeypatch):
    pytest.importorskip("langchain_core")
    try:
        import langchain.chat_models  # noqa: F401
        pytest.skip("langchain is installed")
    except ImportError:
        pass
    monkeypatch.setenv(agent.MODEL_ENV, "anthropic:claude-sonnet-4-5")
    with pytest.raises(RuntimeError, match="pip install langchain langchain-anthropic"):
        agent.decide(generate_requests(1, 1)[0])


def test_simulate_cli_writes_traces(tmp_path, capsys):
    out = tmp_path / "cli.jsonl"
    assert simulate_main(["--n", "20", "--seed", "2", "--out", str(out), "--tag-share", "1", "--inconsistency", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["sessions"] == 20
    assert len(out.read_text().splitlines()) == 40
