"""The Claude mining agent behind ``improver mine --agent claude``.

The built-in miner proposes first (a normal experiment). Then a Claude Agent SDK
session, guided by the context-graph-mining skill, studies the graph through
improver's own MCP tools (served in-process) and hands back, through one extra tool,
a narrative mining report and refinements of the built-in proposals: clearer names,
better wording, and which proposals are out of scope. Those land in a new sibling
experiment (kind ``agent``) whose manifest records the session's turns, tokens and
cost; the built-in experiment is left as it was, so the two can be compared. The
session runs under a turn, cost and time budget, and without credentials it fails
before doing anything.
"""
from __future__ import annotations

import os
import re
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from improver.bundled import bundled
from improver.errors import ImproverError, ProjectError, require
from improver.experiments import Experiment, Manifest, Proposal, now, read_tree
from improver.mcp import build_server
from improver.propose import render_config
from improver.runtime import load_overlay
from improver.workspace import Workspace

SERVER = "improver"
SKILL = "context-graph-mining"
DEFAULT_MODEL = "claude-sonnet-4-5"
SUBMIT = "submit_mining_report"
AGENT_TOOLS = ("graph_summary", "get_session", "list_disagreements", "cluster_precedents", "explain_precedent",
               "list_experiments", "score_experiment", SUBMIT)
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,63}$")
NO_CREDENTIALS = (
    "the Claude mining agent needs Claude credentials: set ANTHROPIC_API_KEY, or log in with Claude Code "
    "(run `claude` and then /login, or `claude setup-token` and set CLAUDE_CODE_OAUTH_TOKEN). "
    "Without --agent, `improver mine` uses the built-in miner and needs no model.")


def skills_dir() -> Path:
    folder = bundled("skills")
    if not (folder / SKILL / "SKILL.md").exists():
        raise ProjectError(f"the improver skills are not at {folder}; reinstall improver with `pip install agent-improver`")
    return folder


def skill_body(name: str) -> str:
    """A skill's instructions without its YAML frontmatter."""
    text = (skills_dir() / name / "SKILL.md").read_text(encoding="utf-8")
    return text.split("---", 2)[2].strip() if text.startswith("---") else text


def check_credentials(env: Mapping[str, str] = os.environ, home: Path | None = None) -> None:
    """ImproverError at once when neither a key, a token nor a Claude Code login is available."""
    keys = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK",
            "CLAUDE_CODE_USE_VERTEX")
    home = home or Path(env.get("HOME") or Path.home())
    if not any(env.get(k) for k in keys) and not (home / ".claude" / ".credentials.json").exists():
        raise ImproverError(NO_CREDENTIALS)


class Refinement(BaseModel):
    id: str = Field(description="id of a built-in proposal")
    name: str | None = Field(None, description="a clearer rule id (lowercase, digits, dashes)")
    reason: str | None = Field(None, description="better wording of the rule's reason, quoting the reviewers")
    out_of_scope: bool = Field(False, description="drop this proposal from the refined experiment")
    why: str = Field("", description="why this change (required when out_of_scope)")


class Submission(BaseModel):
    report: str
    refinements: list[Refinement]
    guidance: list[str] | None


class Usage(BaseModel):
    model: str
    turns: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cost_usd: float | None
    duration_ms: int
    stop: str = Field(description="how the session ended: success, error_max_turns, error_max_budget_usd, ...")
    max_turns: int
    max_budget_usd: float
    refined_from: str


@dataclass
class AgentOutcome:
    built_in: Experiment
    experiment: Experiment
    usage: Usage


def refine(proposals: list[Proposal], refinements: list[Refinement]) -> tuple[list[Proposal], list[dict]]:
    """The built-in proposals with the agent's renames and wording applied and out-of-scope ones removed."""
    by_id = {r.id: r for r in refinements}
    kept, dropped = [], []
    for proposal in proposals:
        change = by_id.get(proposal.id)
        if change is None:
            kept.append(proposal)
        elif change.out_of_scope:
            dropped.append({"id": proposal.id, "why": change.why})
        else:
            name = change.name or proposal.id
            notes = {field: {value: note.replace(proposal.id, name) for value, note in by_value.items()}
                     for field, by_value in proposal.entity_notes.items()}
            kept.append(proposal.model_copy(update={"id": name, "reason": change.reason or proposal.reason,
                                                    "entity_notes": notes}))
    return kept, dropped


def check_submission(submission: Submission, proposals: list[Proposal], taken: set[str]) -> None:
    """ToolError naming what to fix when the agent's submission does not fit the built-in proposals."""
    ids = [p.id for p in proposals]
    if not submission.report.strip():
        raise ToolError("report is empty: write the narrative mining report in markdown")
    for r in submission.refinements:
        if r.id not in ids:
            raise ToolError(f"no built-in proposal {r.id!r}; the proposals are {', '.join(ids)}")
        if r.out_of_scope and not r.why.strip():
            raise ToolError(f"say why {r.id} is out of scope (field 'why')")
        if r.name and not RULE_ID.match(r.name):
            raise ToolError(f"name {r.name!r} must be 3-64 lowercase letters, digits and dashes")
    names = [r.name or r.id for r in submission.refinements if not r.out_of_scope]
    names += [i for i in ids if i not in {r.id for r in submission.refinements}]
    clashes = {n for n in names if names.count(n) > 1} | {n for n in names if n in taken}
    if clashes:
        raise ToolError(f"rule ids must be unique and new: {', '.join(sorted(clashes))} already used")


def system_prompt(built_in: Experiment) -> str:
    manifest = built_in.manifest
    lines = [f"- {p.id}: {p.decision} when {p.condition} (support {p.support}, precision {p.precision:.0%}, "
             f"evidence {', '.join(p.evidence_sessions[:5])})" for p in manifest.proposals]
    return (skill_body(SKILL) + "\n\n# This session\n\n"
            f"You are improver's mining agent. The built-in miner mined {manifest.parent} and wrote experiment "
            f"{built_in.id} with these proposals:\n" + "\n".join(lines) + "\n\nPrompt lines it proposed:\n"
            + ("\n".join(f"- {g}" for g in manifest.guidance) or "- none") + "\n\n"
            f"Study the graph with the improver tools, then call {SUBMIT} exactly once with your narrative mining "
            "report (markdown) and your refinements of the built-in proposals. You can only rename, reword or mark "
            "proposals out of scope; you cannot add rules. A human reviews the result.")


async def _session(ws: Workspace, built_in: Experiment, taken: set[str], model: str, max_turns: int,
                   max_budget_usd: float, timeout: float):
    from claude_agent_sdk import (AssistantMessage, ClaudeAgentOptions, ClaudeSDKError, McpSdkServerConfig,
                                  ResultMessage, ToolUseBlock, query)

    server = build_server(ws.project)
    submitted: list[Submission] = []

    def submit_mining_report(report: str, refinements: list[Refinement] | None = None,
                             guidance: list[str] | None = None) -> str:
        """Hand in the narrative mining report (markdown, citing evidence sessions) and refinements of the
        built-in proposals. `guidance` replaces the proposed prompt lines when given."""
        submission = Submission(report=report, refinements=refinements or [], guidance=guidance)
        check_submission(submission, built_in.manifest.proposals, taken)
        submitted[:] = [submission]
        return f"recorded: {len(submission.refinements)} refinements; the session can end now"

    server.add_tool(submit_mining_report, annotations=ToolAnnotations(read_only_hint=True))
    options = ClaudeAgentOptions(
        model=model, system_prompt=system_prompt(built_in), tools=[], permission_mode="dontAsk",
        allowed_tools=[f"mcp__{SERVER}__{name}" for name in AGENT_TOOLS], max_turns=max_turns,
        max_budget_usd=max_budget_usd, cwd=str(ws.project.root), setting_sources=[], strict_mcp_config=True,
        # The SDK serves any low-level mcp Server in-process; MCPServer keeps its own here.
        mcp_servers={SERVER: McpSdkServerConfig(type="sdk", name=SERVER, instance=server._lowlevel_server)})
    prompt = (f"Mine {built_in.manifest.parent} and refine the built-in proposals of {built_in.id}; "
              f"finish with {SUBMIT}.")
    result, tool_calls, failure = None, 0, None
    try:
        with anyio.fail_after(timeout):
            async with aclosing(query(prompt=prompt, options=options)) as messages:
                async for message in messages:
                    if isinstance(message, AssistantMessage):
                        tool_calls += sum(isinstance(b, ToolUseBlock) for b in message.content)
                    elif isinstance(message, ResultMessage):
                        result = message
    except TimeoutError:
        failure = f"no answer within {timeout:.0f} s"
    except ClaudeSDKError as error:
        failure = str(error)
    return (submitted[0] if submitted else None), result, tool_calls, failure


def mine_with_claude(ws: Workspace, parent: Experiment, model: str = DEFAULT_MODEL, max_turns: int = 40,
                     max_budget_usd: float = 3.0, timeout: float = 1800.0) -> AgentOutcome:
    """Built-in proposals from ``parent``, refined by a Claude Agent SDK session into a new experiment."""
    require("claude_agent_sdk", "the Claude mining agent", "claude")
    check_credentials()
    cycle = parent.manifest.cycle + 1
    built_in = ws.propose(parent, ws.mine(parent), cycle)
    if built_in is None:
        raise ImproverError(f"no precedent mined from {parent.id} has enough evidence to propose, so there is nothing "
                            "for the agent to refine; `improver mine` shows the weak groups")
    taken = {rule.id for rule in load_overlay(parent.config_dir).rules}
    submission, result, tool_calls, failure = anyio.run(_session, ws, built_in, taken, model, max_turns,
                                                        max_budget_usd, timeout)
    stop = result.subtype if result else "no result"
    if submission is None:
        raise ImproverError(f"the Claude mining agent ended without submitting its report ({failure or stop}); "
                            f"the built-in proposals are in {built_in.id}. Check the credentials and the API, or "
                            "raise --max-turns / --max-budget")
    usage: dict[str, Any] = (result.usage if result else None) or {}
    record = Usage(model=model, turns=result.num_turns if result else 0, tool_calls=tool_calls,
                   input_tokens=usage.get("input_tokens", 0), output_tokens=usage.get("output_tokens", 0),
                   cache_read_input_tokens=usage.get("cache_read_input_tokens", 0),
                   cache_creation_input_tokens=usage.get("cache_creation_input_tokens", 0),
                   cost_usd=result.total_cost_usd if result else None, duration_ms=result.duration_ms if result else 0,
                   stop=stop if not failure else f"{stop}: {failure}", max_turns=max_turns,
                   max_budget_usd=max_budget_usd, refined_from=built_in.id)
    return AgentOutcome(built_in, _write(ws, parent, built_in, submission, record), record)


def _write(ws: Workspace, parent: Experiment, built_in: Experiment, submission: Submission, usage: Usage) -> Experiment:
    """The refined experiment: a sibling of the built-in one, with the agent's report and usage."""
    manifest = built_in.manifest
    proposals, dropped = refine(manifest.proposals, submission.refinements)
    guidance = manifest.guidance if submission.guidance is None else submission.guidance
    renamed = [f"- {r.id} → {r.name}" for r in submission.refinements if r.name and not r.out_of_scope]
    changes = renamed + [f"- {r.id}: reworded" for r in submission.refinements if r.reason and not r.out_of_scope]
    changes += [f"- {d['id']}: out of scope ({d['why']})" for d in dropped]
    report = (submission.report.rstrip() + f"\n\n## Changes to the built-in proposals of {built_in.id}\n\n"
              + ("\n".join(changes) or "- none") + "\n\n---\n\n"
              + (built_in.path / "report.md").read_text(encoding="utf-8"))
    refined = Manifest(
        id=ws.experiments.next_id(f"cycle-{manifest.cycle}-agent"), parent=parent.id, created=now(), kind="agent",
        cycle=manifest.cycle, proposals=proposals, guidance=guidance,
        mining=dict(manifest.mining, derived_from=built_in.id, dropped=dropped), agent=usage.model_dump())
    config = render_config(read_tree(parent.config_dir), proposals, guidance, manifest.cycle)
    return ws.experiments.create(refined, config, read_tree(ws.project.base_config_dir), report)
