"""MCP tools for whole cycles and for review: run improvement cycles, accept or reject proposals."""
from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from improver.mcp.models import CycleResult, CycleRow, ReviewResult
from improver.mcp.server import CREATES, ExperimentId, ImproverTools, tool


def register(server: MCPServer, tools: ImproverTools) -> None:
    ws = tools.workspace

    @tool(server, CREATES)
    async def run_cycle(ctx: Context,
                        max_cycles: Annotated[int, Field(ge=1, le=10, description="most cycles to run")] = 2,
                        min_gain: Annotated[float, Field(ge=0, le=1, description="stop when held-out agreement "
                                                                                 "rises less than this")] = 0.005
                        ) -> CycleResult:
        """Run whole improvement cycles (baseline, mine, propose, rerun, score, keep what helps on held-out) until
        agreement flattens or max_cycles; returns agreement cycle by cycle and the experiment to review. Like
        `improver cycle`: writes experiment folders only, changes nothing that ships."""
        from improver.cycle import run_cycles

        def work() -> CycleResult:
            state = run_cycles(ws, max_cycles=max_cycles, min_gain=min_gain)
            notices = [n for row in state["history"]
                       for n in (ws.experiments.get(row["experiment"]).results or {}).get("notices", [])]
            return CycleResult(best=state["parent"], stop_reason=state.get("stop_reason"),
                               history=[CycleRow(**row) for row in state["history"]], notices=list(dict.fromkeys(notices)))
        return await tools.call(work, ctx)

    @tool(server, CREATES)
    async def review_proposal(
            experiment_id: ExperimentId, ctx: Context,
            accept: Annotated[list[str], Field(description="proposal ids the human accepted")] = [],  # noqa: B006
            reject: Annotated[list[str], Field(description="proposal ids the human rejected")] = [],  # noqa: B006
            reject_others: Annotated[bool, Field(description="reject every proposal not in accept")] = False
            ) -> ReviewResult:
        """Record a human's decision on each proposal of an experiment (only what the human decided; never decide
        for them). Every proposal accepted: the experiment is accepted; some: a child holding only those is rerun,
        rescored and accepted; none: it is rejected. Returns the scores of what ships."""
        from improver import review as reviewing

        def work() -> ReviewResult:
            rejected = list(reject)
            if reject_others:
                ids = [p.id for p in tools.experiment(experiment_id).manifest.proposals]
                rejected += [i for i in ids if i not in accept and i not in rejected]
            outcome = reviewing.review(ws, experiment_id, list(accept), rejected)
            results = outcome.results or {}
            message = (f"{outcome.shipped} ships; open it for review with `improver pr {outcome.shipped}`"
                       if outcome.shipped else f"{outcome.experiment} is rejected; nothing ships")
            return ReviewResult(experiment=outcome.experiment, accepted=outcome.accepted, rejected=outcome.rejected,
                                shipped=outcome.shipped, train=results.get("train", {}).get("agreement"),
                                heldout=results.get("heldout", {}).get("agreement"),
                                regressions=len(results["regressions"]) if "regressions" in results else None,
                                message=message)
        return await tools.call(work, ctx)
