"""MCP tools for the mining stage: precedents from the disagreements, and proposals written as experiments."""
from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from improver.mcp.models import EvidenceSession, PrecedentClusters, PrecedentExplanation, ProposeResult
from improver.mcp.server import ADDITIVE, CREATES, ImproverTools, Parent, tool


def register(server: MCPServer, tools: ImproverTools) -> None:
    ws = tools.workspace

    @tool(server, ADDITIVE)
    async def cluster_precedents(ctx: Context, parent: Parent = None) -> PrecedentClusters:
        """Mine the training sessions' disagreements with experiment `parent`'s decisions (default: the baseline,
        made and scored once) into precedents: by reviewer tag, else by clustering the reviewers' reasoning.
        Each precedent has a compact condition, support, precision over all training sessions, conflicts and
        evidence; plus meta-findings (confident-but-overridden, policy ignored, over-escalation). Writes no
        proposal."""
        def work() -> PrecedentClusters:
            base = tools.experiment(parent)
            return PrecedentClusters(parent=base.id, **tools.mined(base).model_dump())
        return await tools.call(work, ctx)

    @tool(server, ADDITIVE)
    async def explain_precedent(name: Annotated[str, Field(description="a precedent name from cluster_precedents")],
                                ctx: Context, parent: Parent = None) -> PrecedentExplanation:
        """One precedent from cluster_precedents in detail: its condition, stats (support, coverage, precision,
        conflicts, expected gain) and its evidence sessions with the reviewers' own words."""
        def work() -> PrecedentExplanation:
            base = tools.experiment(parent)
            result = tools.mined(base)
            found = {p.name: p for p in result.precedents}
            if name not in found:
                raise ToolError(f"no precedent {name!r} mined from {base.id}; its precedents are "
                                f"{', '.join(found) or 'none'} (see cluster_precedents)")
            p = found[name]
            evidence = [tools.session(sid) for sid in p.evidence_sessions]
            return PrecedentExplanation(
                parent=base.id, precedent=p, condition=p.description, proposable=p in result.proposable,
                evidence=[EvidenceSession(session_id=s.session_id, agent_decision=s.agent_decision,
                                          human_decision=s.human_decision, reviewer=s.reviewer,
                                          reasoning=s.human_reasoning, case=s.case) for s in evidence])
        return await tools.call(work, ctx)

    @tool(server, CREATES)
    async def propose_experiment(ctx: Context, parent: Parent = None) -> ProposeResult:
        """Mine against experiment `parent` (default: the baseline) and write a NEW experiment folder with one
        proposal per precedent that has enough evidence: learned rules, entity notes and prompt lines, as a
        unified diff against the target's config. Nothing existing is changed; humans decide what ships. Asked
        again with the same parent and data, it returns the experiment already written (created: false)."""
        def work() -> ProposeResult:
            base = tools.experiment(parent)
            known = {e.id for e in ws.experiments.all()}
            experiment = ws.propose(base, tools.mined(base), base.manifest.cycle + 1)
            if experiment is None:
                return ProposeResult(created=False, experiment=None, message=(
                    f"no precedent mined from {base.id} has enough evidence (at least "
                    f"{tools.project.config.min_evidence} sessions and a condition that gains agreement) to propose"))
            if experiment.id in known:
                return ProposeResult(created=False, experiment=tools.summary(experiment), message=(
                    f"{experiment.id} already holds these proposals from {base.id}; nothing new was written. "
                    f"next: run_experiment and score_experiment {experiment.id}"))
            return ProposeResult(created=True, experiment=tools.summary(experiment), message=(
                f"wrote {experiment.id} with {len(experiment.manifest.proposals)} proposals; "
                f"next: run_experiment and score_experiment {experiment.id}"))
        return await tools.call(work, ctx)
