"""The MCP tools' results: pydantic models, so clients get an output schema and structured content."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from improver.mining import MiningResult, Precedent


class IngestResult(BaseModel):
    source: str
    rows_read: int = Field(description="rows read; rows_read = rows_joined + rows_ignored + rows_waiting + quarantined")
    rows_joined: int = Field(description="rows joined into events")
    rows_ignored: dict[str, int] = Field(default_factory=dict, description="rows read but not used, by reason "
                                         "(spans of other names, model feedback, annotations the mapping does not name)")
    rows_waiting: int = Field(0, description="annotations of this input whose span is not stored yet")
    waiting_joined: int = Field(0, description="annotations stored by an earlier ingest that met their span now")
    waiting_total: int = Field(0, description="annotations in the store still waiting for their span")
    waiting_for: list[str] = Field(default_factory=list, description="a sample of the spans or sessions they wait for")
    events: int = Field(description="events; events = decisions_new + conflicting_decisions + reviews_new + duplicates")
    decisions_new: int
    reviews_new: int
    conflicting_decisions: int = Field(description="decisions that differ from one stored for their session; all "
                                       "are kept and the one with the latest ts is used")
    conflicting_sessions: list[str] = Field(description="the first 20 sessions with conflicting decisions")
    stored: int = Field(description="events stored by this ingest")
    duplicates: int
    quarantined: int
    quarantine_reasons: dict[str, int]
    redacted: dict[str, int]
    orphan_reviews: int
    re_reviewed_sessions: int
    reviewed_sessions: int = Field(description="reviewed sessions in the store after this ingest")


class GraphSummary(BaseModel):
    nodes: dict[str, int] = Field(description="node count by label")
    edges: dict[str, int] = Field(description="edge count by type")
    sessions: int
    train_sessions: int
    heldout_sessions: int
    disagreements: int = Field(description="sessions where the human overrode the agent (as traced)")
    agreement: float = Field(description="traced agent-human agreement over all reviewed sessions")
    top_disagreements: dict[str, list[dict]] = Field(description="groups with the most overrides, by entity, band and precedent")


class AgentDecision(BaseModel):
    decision: str
    confidence: str | None
    reasoning: str
    cited: list[str]


class HumanReview(BaseModel):
    decision: str
    reviewer: str
    reasoning: str
    precedent: str | None
    conditions: list[str]
    confidence: str | None = None


class SessionContext(BaseModel):
    session_id: str
    split: Literal["train", "heldout"]
    agrees: bool
    case: dict[str, Any]
    agent: AgentDecision
    review: HumanReview
    entities: dict[str, str] = Field(description="entity field -> value")
    bands: dict[str, str] = Field(description="numeric field -> band")
    precedent: str | None
    nodes: list[dict[str, Any]] = Field(description="the session's context subgraph")
    edges: list[dict[str, str]]


class DisagreementRow(BaseModel):
    session_id: str
    split: str
    agent_decision: str
    agent_confidence: str | None
    human_decision: str
    precedent: str | None
    reviewer_reasoning: str
    entities: dict[str, str]


class Disagreements(BaseModel):
    total: int = Field(description="disagreements matching the filters (rows may be cut at limit)")
    by_pair: dict[str, int] = Field(description="count by 'agent -> human' decision pair")
    by_precedent: dict[str, int]
    sessions: list[DisagreementRow]


class PrecedentClusters(MiningResult):
    parent: str = Field(description="the experiment whose decisions were mined")


class EvidenceSession(BaseModel):
    session_id: str
    agent_decision: str
    human_decision: str
    reviewer: str
    reasoning: str = Field(description="the reviewer's own words")
    case: dict[str, Any]


class PrecedentExplanation(BaseModel):
    parent: str
    precedent: Precedent
    condition: str = Field(description="the compact condition in words ('' when the precedent is weak)")
    proposable: bool = Field(description="strong enough to become a proposal (condition, gain, evidence)")
    evidence: list[EvidenceSession]


class ProposalSummary(BaseModel):
    id: str
    precedent: str
    decision: str
    condition: str
    support: int
    precision: float
    evidence_sessions: list[str]
    expected_train_gain: float


class ExperimentSummary(BaseModel):
    id: str
    parent: str | None
    kind: str
    cycle: int
    status: str
    path: str = Field(description="folder relative to the project")
    proposals: list[ProposalSummary]
    guidance: list[str]
    patch: str = Field(description="unified diff against the target's base config")


class ProposeResult(BaseModel):
    created: bool
    message: str
    experiment: ExperimentSummary | None


class RunResult(BaseModel):
    experiment: str
    decisions: int
    by_decision: dict[str, int]
    errors: int


class SplitScore(BaseModel):
    sessions: int
    agree: int
    agreement: float | None


class Scores(BaseModel):
    experiment: str
    parent: str | None
    train: SplitScore
    heldout: SplitScore
    all: SplitScore
    change: dict[str, float | None] | None = Field(None, description="agreement change against the parent, per split")
    fixed: int | None = None
    regressions: list[dict[str, Any]] = Field(default_factory=list, description="agreed before, disagree now")
    per_proposal: dict[str, dict[str, int]] = Field(default_factory=dict, description="leave-one-out gain per proposal")
    confusion: list[dict[str, Any]]
    errors: dict[str, Any]
    notices: list[str] = Field(default_factory=list, description="what to know: cases the agent raised on, "
                                                                 "proposals that changed no decision")
    reproduce: str


class Comparison(BaseModel):
    a: str
    b: str
    agreement: dict[str, dict[str, float | None]] = Field(description="split -> {a, b, change}")
    changed_sessions: list[dict[str, str]] = Field(description="sessions decided differently, with the human decision")
    proposals_only_in_a: list[str]
    proposals_only_in_b: list[str]


class ExperimentRow(BaseModel):
    id: str
    parent: str | None
    kind: str
    cycle: int
    status: str
    proposals: int
    train: float | None = Field(description="train agreement, None until scored")
    heldout: float | None


class ExperimentList(BaseModel):
    experiments: list[ExperimentRow]
    skipped: dict[str, str] = Field(default_factory=dict, description="damaged experiments left out, with the reason")


class InitResult(BaseModel):
    folder: str
    written: list[str] = Field(description="files written, relative to the folder")
    kept: list[str] = Field(description="files that existed and were left as they were")
    config: dict[str, Any] = Field(description="the improver.yaml written")
    from_traces: dict[str, Any] | None = Field(description="what the trace file suggested (sessions, entity fields, bands, decisions)")
    next: str = Field(description="what to do next")


class CycleRow(BaseModel):
    cycle: int = Field(description="0 is the baseline")
    experiment: str
    train: float | None
    heldout: float | None
    change: float | None = Field(description="held-out agreement change against the parent")
    kept: int = Field(description="proposals kept by the gate")
    proposed: int
    regressions: int


class CycleResult(BaseModel):
    best: str = Field(description="the experiment the cycles ended on (the one to review)")
    stop_reason: str | None
    history: list[CycleRow]
    notices: list[str] = Field(description="what to know: cases the agent raised on, proposals that changed nothing")


class ReviewResult(BaseModel):
    experiment: str
    accepted: list[str]
    rejected: list[str]
    shipped: str | None = Field(description="the experiment holding exactly the accepted proposals (None: nothing ships)")
    train: float | None
    heldout: float | None
    regressions: int | None
    message: str
