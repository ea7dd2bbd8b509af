"""The procurement agent: improver's target for the bundled example.

A LangGraph ``StateGraph`` that runs the seed demo's three tools as steps
(``check_policy`` -> ``lookup_vendor`` -> ``check_budget``) and then ``decide``.
The graph state carries a *list* of cases and every node processes the whole list,
so a batch costs one graph invoke.

Public contract (see improver.yaml): ``decide(case, config_dir)`` and
``decide_batch(cases, config_dir)`` return ``{decision, confidence, reasoning, cited}``.

Offline (default) the decision is deterministic and follows the written policy in
``config/`` — correct against policy, wrong against the reviewer's reality. The
check_policy tool returns the CFO's vendor-consolidation directive on every call and
the baseline ignores it, as in the seed demo. When ``PROCUREMENT_AGENT_MODEL`` is set
(e.g. ``anthropic:claude-sonnet-4-5``) a chat model decides over the same tool
outputs instead (``decide_with_model``).

An experiment's learned surfaces are applied through ``improver.runtime.load_overlay``:
a matching learned rule decides the case, entity notes go into the reasoning (and the
model prompt), and the prompt fragment is appended to the model's system prompt.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypedDict

import yaml
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field, ValidationError

from improver.runtime import Overlay, load_overlay

DEFAULT_CONFIG_DIR = Path(__file__).parent / "config"
MODEL_ENV = "PROCUREMENT_AGENT_MODEL"
DECISIONS = ("approve", "reject", "flag-for-review")
_WATCHED_FILES = ("policy.yaml", "vendors.yaml", "learned_rules.yaml", "entity_notes.yaml", "prompt_fragment.md")


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class Config:
    """One config folder, loaded: the written policy, the vendor list and the overlay."""

    auto_below: float
    manager_up_to: float
    renewal_flag_above: float
    departments: dict[str, dict[str, Any]]
    vendors: dict[str, dict[str, Any]]
    policies: tuple[dict[str, str], ...]
    overlay: Overlay


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; a procurement config folder needs policy.yaml and vendors.yaml")
    return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


def _stamp(folder: Path) -> tuple:
    stamps = []
    for name in _WATCHED_FILES:
        try:
            stat = (folder / name).stat()
            stamps.append((stat.st_mtime_ns, stat.st_size))
        except FileNotFoundError:
            stamps.append(None)
    return tuple(stamps)


@lru_cache(maxsize=64)
def _load(folder: Path, stamp: tuple) -> Config:
    policy = _read_yaml(folder / "policy.yaml")
    vendors = _read_yaml(folder / "vendors.yaml")
    tiers = policy.get("approval_tiers", {})
    return Config(
        auto_below=float(tiers.get("auto_approve_below", 5000)),
        manager_up_to=float(tiers.get("manager_approval_up_to", 50000)),
        renewal_flag_above=float(policy.get("renewal_flag_above_pct", 10)),
        departments={str(k): dict(v or {}) for k, v in (policy.get("departments") or {}).items()},
        vendors={str(v["name"]): dict(v) for v in vendors.get("vendors") or []},
        policies=tuple({"id": str(p["id"]), "title": str(p.get("title", p["id"])), "text": str(p["text"]).strip()}
                       for p in policy.get("policies") or []),
        overlay=load_overlay(folder),
    )


def load_config(config_dir: str | Path = DEFAULT_CONFIG_DIR) -> Config:
    """The loaded config of a folder, cached until one of its files changes."""
    folder = Path(config_dir).resolve()
    return _load(folder, _stamp(folder))


# --------------------------------------------------------------------------- tools

def check_policy(case: dict, config: Config) -> tuple[dict[str, str], ...]:
    """Tool: every written policy (the consolidation directive included, every call)."""
    return config.policies


def lookup_vendor(case: dict, config: Config) -> dict[str, Any]:
    """Tool: the vendor record; vendors missing from the list come back as not_listed."""
    name = str(case.get("vendor", ""))
    return config.vendors.get(name) or {
        "name": name, "status": "not_listed", "categories": [], "notes": "Not on the vendor list.",
        "cost_overrun_factor": 1.0, "relationship_credit": "none",
    }


def check_budget(case: dict, vendor: dict[str, Any], config: Config) -> dict[str, Any]:
    """Tool: the department's remaining budget and whether the (effective) amount fits."""
    department = str(case.get("department", ""))
    amount = float(case.get("amount") or 0)
    record = config.departments.get(department)
    factor = float(vendor.get("cost_overrun_factor", 1.0)) * float((record or {}).get("estimate_factor", 1.0))
    effective = amount * factor
    if record is None:
        return {"department": department, "remaining": None, "amount": amount,
                "effective_amount": effective, "status": "unknown-department"}
    remaining = float(record.get("budget_remaining", 0))
    return {"department": department, "remaining": remaining, "amount": amount, "effective_amount": effective,
            "status": "over" if effective > remaining else "within"}


# --------------------------------------------------------------------------- deciding

def _result(decision: str, confidence: str, reasoning: str, cited: list[str]) -> dict[str, Any]:
    return {"decision": decision, "confidence": confidence, "reasoning": reasoning, "cited": cited}


def _money(value: float) -> str:
    return f"${value:,.0f}"


def baseline_decision(case: dict, vendor: dict, budget: dict, config: Config) -> dict[str, Any]:
    """The written-policy decision: deterministic, and blind to the consolidation directive."""
    name, status = vendor["name"], vendor.get("status", "not_listed")
    vendor_fact = f"vendor:{name}:{status}"
    amount = budget["effective_amount"]
    if status == "suspended":
        return _result("reject", "high", f"{name} is a suspended vendor; policy requires rejection.",
                       ["policy:vendor-status", vendor_fact])
    if status == "not_listed":
        return _result("flag-for-review", "low", f"{name} is not on the approved vendor list; needs review.",
                       ["policy:vendor-status", vendor_fact])
    if budget["status"] == "unknown-department":
        return _result("flag-for-review", "low", f"Unknown department {budget['department']!r}; needs review.",
                       ["policy:budget-limits", "budget:unknown"])
    if budget["status"] == "over":
        return _result("reject", "medium",
                       f"{_money(amount)} exceeds {budget['department']}'s remaining budget of {_money(budget['remaining'])}.",
                       ["policy:budget-limits", vendor_fact, "budget:over"])
    if amount > config.manager_up_to:
        return _result("flag-for-review", "medium", f"{_money(amount)} is above {_money(config.manager_up_to)}; needs VP approval.",
                       ["policy:approval-tiers", vendor_fact, "budget:within", "tier:vp"])
    increase = float(case.get("price_increase_pct") or 0)
    if case.get("is_renewal") and increase > config.renewal_flag_above:
        return _result("flag-for-review", "medium",
                       f"Renewal with a {increase:g}% price increase (above {config.renewal_flag_above:g}%); must be flagged.",
                       ["policy:renewal-price-increase", vendor_fact, "budget:within", f"renewal:+{increase:g}%"])
    if amount < config.auto_below:
        return _result("approve", "high", f"{_money(amount)} from {status} vendor {name} is below the auto-approve tier and within budget.",
                       ["policy:approval-tiers", vendor_fact, "budget:within", "tier:auto"])
    return _result("approve", "medium", f"{_money(amount)} from {status} vendor {name} is within budget; manager-approval tier.",
                   ["policy:approval-tiers", vendor_fact, "budget:within", "tier:manager"])


def apply_relationship_credit(result: dict, vendor: dict, budget: dict, config: Config) -> dict:
    """Vendor extension field relationship_credit (inert when 'none')."""
    credit = vendor.get("relationship_credit", "none")
    if credit == "never-reject" and result["decision"] == "reject":
        return _result("flag-for-review", "medium", result["reasoning"] + f" {vendor['name']} has a never-reject relationship credit; flagging instead.",
                       result["cited"] + [f"vendor:{vendor['name']}:credit:never-reject"])
    in_manager_band = config.auto_below <= budget["effective_amount"] <= config.manager_up_to
    if credit == "goodwill" and in_manager_band and result["decision"] != "approve" and vendor.get("status") != "suspended":
        return _result("approve", "medium", result["reasoning"] + f" Approved on {vendor['name']}'s goodwill credit.",
                       result["cited"] + [f"vendor:{vendor['name']}:credit:goodwill"])
    return result


def with_overlay(case: dict, result: dict, overlay: Overlay) -> dict:
    """A matching learned rule decides the case; entity notes are added to the reasoning."""
    rule = overlay.match(case)
    if rule is not None:
        result = _result(rule.decision, rule.confidence, f"Learned rule {rule.id}: {rule.reason}".rstrip(": "),
                         [f"rule:{rule.id}"] + result["cited"])
    notes = overlay.notes_for(case)
    if notes:
        result = dict(result, reasoning=result["reasoning"] + " Notes: " + " ".join(notes))
    return result


# --------------------------------------------------------------------------- model mode

class Decision(BaseModel):
    """What the chat model must return for one request."""

    decision: Literal["approve", "reject", "flag-for-review"]
    confidence: Literal["high", "medium", "low"] = "medium"
    reasoning: str = ""
    cited: list[str] = Field(default_factory=list)


def system_prompt(config: Config) -> str:
    """The model's instructions: role, written policies, output format and the prompt fragment."""
    lines = [
        "You are the procurement agent of Acme Corp. Decide each purchase request: approve, reject or flag-for-review,",
        "with a confidence of high, medium or low. Base the decision on the written policies and the tool outputs.",
        "",
        "Written policies:",
        *(f"- [{p['id']}] {p['title']}: {p['text']}" for p in config.policies),
        "",
        'Answer with JSON only: {"decision": ..., "confidence": ..., "reasoning": ..., "cited": [policy ids and facts]}.',
    ]
    if config.overlay.prompt_fragment.strip():
        lines += ["", config.overlay.prompt_fragment.strip()]
    return "\n".join(lines)


def request_prompt(case: dict, policies, vendor: dict, budget: dict, notes: list[str]) -> str:
    """The per-request message: the case and the outputs of the three tools."""
    parts = [
        "Purchase request:", json.dumps(case, indent=2, default=str),
        "", "check_policy returned:", json.dumps(list(policies), indent=2),
        "", "lookup_vendor returned:", json.dumps(vendor, indent=2, default=str),
        "", "check_budget returned:", json.dumps(budget, indent=2, default=str),
    ]
    if notes:
        parts += ["", "Notes on the entities in this request:", *(f"- {note}" for note in notes)]
    return "\n".join(parts)


def _parse(output: Any) -> Decision:
    if isinstance(output, Decision):
        return output
    if isinstance(output, dict):
        return Decision.model_validate(output)
    text = output.content if hasattr(output, "content") else str(output)
    if isinstance(text, list):  # content blocks
        text = "".join(block.get("text", "") if isinstance(block, dict) else str(block) for block in text)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"no JSON object in the model's answer: {text[:200]!r}")
    return Decision.model_validate_json(text[start:end + 1])


def _model_decisions(model: BaseChatModel, prompts: list[list], max_concurrency: int = 8) -> list[dict]:
    try:
        runnable = model.with_structured_output(Decision)
    except NotImplementedError:
        runnable = model
    outputs = runnable.batch(prompts, config={"max_concurrency": max_concurrency}, return_exceptions=True)
    results = []
    for output in outputs:
        try:
            if isinstance(output, Exception):
                raise output
            parsed = _parse(output)
            results.append(_result(parsed.decision, parsed.confidence, parsed.reasoning, list(parsed.cited)))
        except (ValueError, ValidationError) as error:
            results.append(_result("flag-for-review", "low", f"Model answer could not be used ({error}); needs review.",
                                   ["model:unparseable"]))
    return results


# --------------------------------------------------------------------------- the graph

class BatchState(TypedDict, total=False):
    cases: list[dict]
    config: Config
    policies: list
    vendors: list[dict]
    budgets: list[dict]
    results: list[dict]


def _check_policy_node(state: BatchState) -> dict:
    return {"policies": [check_policy(case, state["config"]) for case in state["cases"]]}


def _lookup_vendor_node(state: BatchState) -> dict:
    return {"vendors": [lookup_vendor(case, state["config"]) for case in state["cases"]]}


def _check_budget_node(state: BatchState) -> dict:
    config = state["config"]
    return {"budgets": [check_budget(case, vendor, config) for case, vendor in zip(state["cases"], state["vendors"])]}


def _decide_node(state: BatchState, config: RunnableConfig) -> dict:
    settings = state["config"]
    overlay = settings.overlay
    model = (config.get("configurable") or {}).get("model")
    cases, vendors, budgets = state["cases"], state["vendors"], state["budgets"]
    if model is None:
        results = [
            apply_relationship_credit(baseline_decision(case, vendor, budget, settings), vendor, budget, settings)
            for case, vendor, budget in zip(cases, vendors, budgets)
        ]
        return {"results": [with_overlay(case, result, overlay) for case, result in zip(cases, results)]}
    # Model mode: learned rules still decide the cases they match (no tokens spent on them).
    results: list[dict | None] = [None] * len(cases)
    pending, prompts = [], []
    system = SystemMessage(content=system_prompt(settings))
    for index, (case, policies, vendor, budget) in enumerate(zip(cases, state["policies"], vendors, budgets)):
        rule = overlay.match(case)
        if rule is not None:
            results[index] = with_overlay(case, _result(rule.decision, rule.confidence, "", []), overlay)
            continue
        pending.append(index)
        prompts.append([system, HumanMessage(content=request_prompt(case, policies, vendor, budget, overlay.notes_for(case)))])
    for index, result in zip(pending, _model_decisions(model, prompts) if prompts else []):
        results[index] = result
    return {"results": results}


@lru_cache(maxsize=1)
def graph():
    """The compiled agent graph (built once per process)."""
    builder = StateGraph(BatchState)
    builder.add_node("check_policy", _check_policy_node)
    builder.add_node("lookup_vendor", _lookup_vendor_node)
    builder.add_node("check_budget", _check_budget_node)
    builder.add_node("decide", _decide_node)
    builder.add_edge(START, "check_policy")
    builder.add_edge("check_policy", "lookup_vendor")
    builder.add_edge("lookup_vendor", "check_budget")
    builder.add_edge("check_budget", "decide")
    builder.add_edge("decide", END)
    return builder.compile()


def _run(cases: list[dict], config_dir: str | Path, model: BaseChatModel | None) -> list[dict]:
    if not cases:
        return []
    state = graph().invoke({"cases": list(cases), "config": load_config(config_dir)},
                           config={"configurable": {"model": model}})
    return state["results"]


@lru_cache(maxsize=4)
def _model_from_name(name: str) -> BaseChatModel:
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as error:
        raise RuntimeError(
            f"{MODEL_ENV}={name!r} asks for a chat model, but langchain is not installed: "
            "pip install langchain langchain-anthropic (or unset the variable to decide offline)"
        ) from error
    return init_chat_model(name)


def decide_with_model(cases: list[dict], config_dir: str | Path, model: BaseChatModel) -> list[dict]:
    """Decide a batch with a chat model over the same tool outputs (any langchain-core chat model)."""
    return _run(cases, config_dir, model)


def decide_batch(cases: list[dict], config_dir: str | Path = DEFAULT_CONFIG_DIR) -> list[dict]:
    """Decide a batch of cases in one graph invoke; with a model when PROCUREMENT_AGENT_MODEL is set."""
    name = os.environ.get(MODEL_ENV, "").strip()
    return _run(cases, config_dir, _model_from_name(name) if name else None)


def decide(case: dict, config_dir: str | Path = DEFAULT_CONFIG_DIR) -> dict:
    """improver's target contract: decide one purchase request with the config in ``config_dir``."""
    return decide_batch([case], config_dir)[0]
