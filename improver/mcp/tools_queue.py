"""MCP tools for live traffic: the review queue, predicted overrides, and precedents over time."""
from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from improver.flag import Flag
from improver.mcp.server import ADDITIVE, ImproverTools, tool


class QueuedSession(BaseModel):
    session_id: str
    agent_decision: str
    picked_by: str = Field(description="predicted-override, fold-disagreement, candidate-precedent, boundary, coverage, "
                           "unexplained-override, unlearned-precedent, unconfirmed-rule, rule-edge or random")
    reason: str
    priority: float
    probability: float = Field(description="probability the session was picked (1 for ranked picks)")
    predicted: str | None = Field(None, description="what the rule behind the pick would decide")


class ReviewQueue(BaseModel):
    batch: str
    reference: str | None = Field(description="experiment whose rules were applied")
    pending: int = Field(description="unreviewed decisions considered")
    random_share: float
    recorded: bool
    picks: list[QueuedSession]


class PredictedOverrides(BaseModel):
    experiment: str
    flags: list[Flag]


class TrackedPrecedent(BaseModel):
    id: str
    name: str
    decision: str
    status: str = Field(description="new, growing, stable, handled, regressed or not-seen")
    description: str = ""
    first_seen: str
    weekly: dict[str, int] = Field(default_factory=dict, description="override sessions per ISO week")
    handled_by: str | None = None


class PrecedentsOverTime(BaseModel):
    observed: str = Field(description="ISO week of the newest review")
    precedents: list[TrackedPrecedent]


def register(server: MCPServer, tools: ImproverTools) -> None:
    ws = tools.workspace

    @tool(server, ADDITIVE)
    async def review_queue(ctx: Context, n: Annotated[int, Field(ge=1, le=1000, description="sessions to pick")] = 50,
                           random_share: Annotated[float, Field(ge=0, le=1, description="share picked at random")] = 0.2,
                           record: Annotated[bool, Field(description="record the picks (their reviews then count "
                                                                     "in the weighted estimates)")] = True) -> ReviewQueue:
        """Pick the unreviewed agent decisions whose human review would teach the loop the most: predicted
        overrides, precedents short of evidence, values on a learned threshold, entities with few reviews, plus a
        random share so agreement can still be estimated without bias. Each pick says why."""
        def work() -> ReviewQueue:
            from improver.queue import build_queue, next_batch
            from improver.queue import record as save

            with ws.store() as store:
                queue = build_queue(ws, n=n, random_share=random_share, batch=next_batch(store.db))
                if record:
                    save(store.db, queue)
            return ReviewQueue(recorded=record, **queue.as_dict())
        return await tools.call(work, ctx)

    @tool(server, ADDITIVE)
    async def predicted_overrides(ctx: Context, since: Annotated[str | None, Field(
            description="only decisions at or after this ISO timestamp")] = None) -> PredictedOverrides:
        """Unreviewed decisions that the accepted experiment's rules (else the best scored one's) would decide
        differently: what the humans would probably override, with the rule, its evidence sessions and precision."""
        def work() -> PredictedOverrides:
            from improver.flag import flag

            reference, flags = flag(ws, since)
            return PredictedOverrides(experiment=reference, flags=flags)
        return await tools.call(work, ctx)

    @tool(server, ADDITIVE)
    async def precedents_over_time(ctx: Context) -> PrecedentsOverTime:
        """Every precedent with a stable id across mining runs, its status (new, growing, handled by the accepted
        experiment, regressed) and its override sessions per week."""
        def work() -> PrecedentsOverTime:
            from improver.precedents import track

            registry = track(ws)
            return PrecedentsOverTime(observed=registry["observations"][-1]["week"],
                                      precedents=registry["precedents"])
        return await tools.call(work, ctx)
