"""MCP tools that read the context graph: its summary, one session's subgraph, the disagreements."""
from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from improver.mcp.models import AgentDecision, DisagreementRow, Disagreements, GraphSummary, HumanReview, SessionContext
from improver.mcp.server import READ_ONLY, ImproverTools, tool
from improver.models import ReviewedSession


def register(server: MCPServer, tools: ImproverTools) -> None:
    ws = tools.workspace
    split_counts: dict = {}  # train and overridden counts of the sessions list they were counted on

    @tool(server, READ_ONLY)
    async def graph_summary() -> GraphSummary:
        """Counts of the context graph's nodes and edges, the train/held-out split, traced agreement, and the
        entities, bands and precedents with the most human overrides. Start here."""
        def work() -> GraphSummary:
            sessions = ws.require_sessions()
            graph = ws.graph()  # kept by the workspace; its counts and groupings are kept until the graph changes
            counts = graph.summary()
            if split_counts.get("sessions") is not sessions:
                split_counts.update(sessions=sessions, train=sum(1 for s in sessions if ws.split(s.session_id) == "train"),
                                    overridden=sum(1 for s in sessions if not s.agrees))
            train, overridden = split_counts["train"], split_counts["overridden"]
            top = {by: graph.disagreements(by)[:5] for by in ("entity", "band", "precedent")}
            return GraphSummary(nodes=counts["nodes"], edges=counts["edges"], sessions=len(sessions), train_sessions=train,
                                heldout_sessions=len(sessions) - train, disagreements=overridden,
                                agreement=round(1 - overridden / len(sessions), 4), top_disagreements=top)
        return await tools.call(work)

    @tool(server, READ_ONLY)
    async def get_session(session_id: Annotated[str, Field(description="a reviewed session's id "
                                                                         "(list_disagreements shows them)")]) -> SessionContext:
        """The context subgraph of one reviewed session: the case, the agent's decision with its reasoning and
        citations, the human review with reasoning, precedent and conditions, its entities, numeric bands and
        precedent, plus the raw graph nodes and edges."""
        def work() -> SessionContext:
            s = tools.session(session_id)
            subgraph = ws.graph().session(session_id) or {"nodes": [], "edges": []}
            bands = {n["field"]: n["band"] for n in subgraph["nodes"] if n.get("label") == "Band"}
            return SessionContext(
                session_id=s.session_id, split=ws.split(s.session_id), agrees=s.agrees, case=s.case,
                agent=AgentDecision(decision=s.agent_decision, confidence=s.agent_confidence, reasoning=s.agent_reasoning,
                                    cited=s.cited),
                review=HumanReview(decision=s.human_decision, reviewer=s.reviewer, reasoning=s.human_reasoning,
                                   precedent=s.precedent, conditions=s.conditions, confidence=s.human_confidence),
                entities=tools.entities(s), bands=bands, precedent=s.precedent,
                nodes=subgraph["nodes"], edges=subgraph["edges"])
        return await tools.call(work)

    @tool(server, READ_ONLY)
    async def list_disagreements(
            entity: Annotated[str | None, Field(description="an entity value ('DataStream Analytics') or "
                                                            "field=value ('vendor=DataStream Analytics')")] = None,
            precedent: Annotated[str | None, Field(description="a reviewer's precedent tag")] = None,
            decision_pair: Annotated[str | None, Field(description="agent -> human decisions, e.g. 'approve->reject'")] = None,
            confidence: Annotated[str | None, Field(description="the agent's stated confidence, e.g. 'high'")] = None,
            split: Annotated[Literal["train", "heldout", "all"], Field(
                description="which sessions: 'train' (mined), 'heldout' (kept for scoring) or 'all'")] = "train",
            limit: Annotated[int, Field(ge=1, le=500, description="most rows returned (total counts them all)")] = 50
            ) -> Disagreements:
        """Sessions where the human reviewer overrode the agent (as traced), filtered by `entity` (a value such as
        'DataStream Analytics', or 'vendor=DataStream Analytics'), `precedent` tag, `decision_pair`
        ('approve->reject'), the agent's `confidence` ('high'), and `split` (default 'train': mine only training
        sessions; held-out sessions are for scoring)."""
        pair = None
        if decision_pair is not None:
            parts = [p.strip() for p in decision_pair.replace("->", ">").split(">")]
            if len(parts) != 2 or not all(parts):
                raise ToolError(f"decision_pair {decision_pair!r} must look like 'approve->reject' (agent -> human)")
            pair = tuple(parts)
        field, _, value = entity.rpartition("=") if entity else ("", "", "")

        def keep(s: ReviewedSession) -> bool:
            entities = tools.entities(s)
            return (not s.agrees and (split == "all" or ws.split(s.session_id) == split)
                    and (not entity or (entities.get(field.strip()) == value.strip() if field
                                        else value.strip() in entities.values()))
                    and (precedent is None or s.precedent == precedent)
                    and (pair is None or (s.agent_decision, s.human_decision) == pair)
                    and (confidence is None or (s.agent_confidence or "").lower() == confidence.lower()))

        def work() -> Disagreements:
            if entity and field and field.strip() not in tools.project.config.entity_fields:
                raise ToolError(f"{field.strip()!r} is not an entity field; this project's entity fields are "
                                f"{', '.join(tools.project.config.entity_fields) or 'none'}")
            rows = [s for s in ws.require_sessions() if keep(s)]
            return Disagreements(
                total=len(rows), by_pair=dict(Counter(f"{s.agent_decision} -> {s.human_decision}" for s in rows)),
                by_precedent=dict(Counter(s.precedent or "(untagged)" for s in rows)),
                sessions=[DisagreementRow(session_id=s.session_id, split=ws.split(s.session_id),
                                          agent_decision=s.agent_decision, agent_confidence=s.agent_confidence,
                                          human_decision=s.human_decision, precedent=s.precedent,
                                          reviewer_reasoning=s.human_reasoning, entities=tools.entities(s))
                          for s in rows[:limit]])
        return await tools.call(work)
