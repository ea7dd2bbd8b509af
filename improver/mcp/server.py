"""The MCP server: improver's loop as tools any agent can call (`improver serve`).

Each tool calls one ``Workspace`` stage and returns a pydantic model, so clients get
both an output schema and structured content. Tools run one at a time in a worker
thread (the stages touch SQLite and experiment folders), report progress on reruns,
and turn improver's typed errors into tool errors whose text says what to fix.
Experiment ids are validated before any path is built and trace paths must lie
inside the project folder, so no tool writes outside it. Experiment manifests,
reports, results and patches are also served as resources.
"""
from __future__ import annotations

import difflib
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from improver.errors import ImproverError
from improver.experiments import Experiment, check_id
from improver.mining import MiningResult, Precedent
from improver.models import ReviewedSession
from improver.project import Project
from improver.workspace import Workspace

T = TypeVar("T")
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
# Writes new files in the project (experiments, caches) but never changes or deletes existing ones.
ADDITIVE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
CREATES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
INSTRUCTIONS = """improver mines human reviewers' overrides of an AI agent into tested config changes.
Typical order: graph_summary, list_disagreements, cluster_precedents, explain_precedent, propose_experiment,
run_experiment, score_experiment, compare_experiments. Rules: cite evidence from at least 3 sessions for any
claim about a precedent; judge a proposal by its held-out score, never by training agreement alone; humans
approve what ships (propose and score; do not present an experiment as merged)."""


# --- tool results ------------------------------------------------------------------
class IngestResult(BaseModel):
    source: str
    events: int
    decisions_new: int
    reviews_new: int
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


# --- the server ---------------------------------------------------------------------
class ImproverTools:
    """The tools' bodies over one Workspace; each runs in a worker thread, one at a time."""

    def __init__(self, project: Project | str | Path):
        self.workspace = Workspace(project)
        self.project = self.workspace.project
        self._lock = anyio.Lock()
        self._mined: dict[tuple[str, int], MiningResult] = {}

    async def call(self, work: Callable[[], T], ctx: Context | None = None) -> T:
        """Run ``work`` in a thread with progress sent to the client; typed errors become tool errors."""
        token = anyio.lowlevel.current_token()

        def progress(label: str, done: int, total: int) -> None:
            if ctx is not None:
                anyio.from_thread.run(ctx.report_progress, done, total, label, token=token)

        async with self._lock:
            self.workspace.progress = progress
            try:
                return await anyio.to_thread.run_sync(work)
            except ImproverError as error:
                raise ToolError(str(error)) from error
            finally:
                self.workspace.progress = None

    # helpers used inside worker threads
    def experiment(self, experiment_id: str | None) -> Experiment:
        """The named experiment, or the baseline (made, run and scored once) when None."""
        if experiment_id is None:
            return self.workspace.baseline()
        return self.workspace.experiments.get(check_id(experiment_id))

    def session(self, session_id: str) -> ReviewedSession:
        sessions = {s.session_id: s for s in self.workspace.require_sessions()}
        if session_id not in sessions:
            near = difflib.get_close_matches(session_id, list(sessions), n=3)
            raise ToolError(f"no reviewed session {session_id!r}" + (f"; did you mean {', '.join(near)}?" if near else
                            "; list_disagreements shows session ids"))
        return sessions[session_id]

    def mined(self, parent: Experiment) -> MiningResult:
        key = (parent.id, len(self.workspace.sessions))
        if key not in self._mined:
            self._mined[key] = self.workspace.mine(parent)
        return self._mined[key]

    def entities(self, session: ReviewedSession) -> dict[str, str]:
        fields = self.project.config.entity_fields
        return {f: str(session.case[f]) for f in fields if session.case.get(f) not in (None, "")}

    def summary(self, experiment: Experiment) -> ExperimentSummary:
        manifest = experiment.manifest
        return ExperimentSummary(
            id=experiment.id, parent=manifest.parent, kind=manifest.kind, cycle=manifest.cycle, status=experiment.status,
            path=experiment.path.relative_to(self.project.root).as_posix(), guidance=manifest.guidance,
            patch=(experiment.path / "patch.diff").read_text(encoding="utf-8"),
            proposals=[ProposalSummary(id=p.id, precedent=p.precedent, decision=p.decision, condition=p.condition,
                                       support=p.support, precision=p.precision, evidence_sessions=p.evidence_sessions,
                                       expected_train_gain=p.expected_effect.get("train_gain", 0))
                       for p in manifest.proposals])


def build_server(project: Project | str | Path = ".") -> MCPServer:
    """An MCP server whose tools work on the project folder ``project``."""
    tools = ImproverTools(project)
    ws = tools.workspace
    server = MCPServer("improver", instructions=INSTRUCTIONS, version="0.1.0", log_level="WARNING")

    def tool(annotations: ToolAnnotations):
        """Register a tool whose description is its docstring on one line."""
        def register(fn):
            return server.tool(annotations=annotations, description=" ".join(fn.__doc__.split()))(fn)
        return register

    @tool(ADDITIVE)
    async def ingest_traces(source: str, ctx: Context) -> IngestResult:
        """Read agent decisions and human reviews from a trace file (native JSONL) into the project's store.
        `source` is a path relative to the project folder (or a URL for URL-based sources). Ingest is idempotent:
        events already stored are counted as duplicates; bad lines are quarantined with a reason."""
        def work() -> IngestResult:
            spec = source if "://" in source else str(tools.project.inside(Path(source)))
            report = ws.ingest(spec).as_dict()
            return IngestResult(**report, reviewed_sessions=len(ws.sessions))
        return await tools.call(work, ctx)

    @tool(READ_ONLY)
    async def graph_summary() -> GraphSummary:
        """Counts of the context graph's nodes and edges, the train/held-out split, traced agreement, and the
        entities, bands and precedents with the most human overrides. Start here."""
        def work() -> GraphSummary:
            sessions = ws.require_sessions()
            graph = ws.graph()
            counts = graph.summary()
            train = sum(1 for s in sessions if ws.split(s.session_id) == "train")
            overridden = sum(1 for s in sessions if not s.agrees)
            top = {by: graph.disagreements(by)[:5] for by in ("entity", "band", "precedent")}
            return GraphSummary(nodes=counts["nodes"], edges=counts["edges"], sessions=len(sessions), train_sessions=train,
                                heldout_sessions=len(sessions) - train, disagreements=overridden,
                                agreement=round(1 - overridden / len(sessions), 4), top_disagreements=top)
        return await tools.call(work)

    @tool(READ_ONLY)
    async def get_session(session_id: str) -> SessionContext:
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
                                   precedent=s.precedent, conditions=s.conditions),
                entities=tools.entities(s), bands=bands, precedent=s.precedent,
                nodes=subgraph["nodes"], edges=subgraph["edges"])
        return await tools.call(work)

    @tool(READ_ONLY)
    async def list_disagreements(entity: str | None = None, precedent: str | None = None,
                                 decision_pair: str | None = None, confidence: str | None = None,
                                 split: Literal["train", "heldout", "all"] = "train", limit: Annotated[int, Field(ge=1, le=500)] = 50
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

    @tool(ADDITIVE)
    async def cluster_precedents(ctx: Context, parent: str | None = None) -> PrecedentClusters:
        """Mine the training sessions' disagreements with experiment `parent`'s decisions (default: the baseline,
        made and scored once) into precedents: by reviewer tag, else by clustering the reviewers' reasoning.
        Each precedent has a compact condition, support, precision over all training sessions, conflicts and
        evidence; plus meta-findings (confident-but-overridden, policy ignored, over-escalation). Writes no
        proposal."""
        def work() -> PrecedentClusters:
            base = tools.experiment(parent)
            return PrecedentClusters(parent=base.id, **tools.mined(base).model_dump())
        return await tools.call(work, ctx)

    @tool(ADDITIVE)
    async def explain_precedent(name: str, ctx: Context, parent: str | None = None) -> PrecedentExplanation:
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

    @tool(CREATES)
    async def propose_experiment(ctx: Context, parent: str | None = None) -> ProposeResult:
        """Mine against experiment `parent` (default: the baseline) and write a NEW experiment folder with one
        proposal per precedent that has enough evidence: learned rules, entity notes and prompt lines, as a
        unified diff against the target's config. Nothing existing is changed; humans decide what ships."""
        def work() -> ProposeResult:
            base = tools.experiment(parent)
            experiment = ws.propose(base, tools.mined(base), base.manifest.cycle + 1)
            if experiment is None:
                return ProposeResult(created=False, experiment=None, message=(
                    f"no precedent mined from {base.id} has enough evidence (at least "
                    f"{tools.project.config.min_evidence} sessions and a condition that gains agreement) to propose"))
            return ProposeResult(created=True, experiment=tools.summary(experiment), message=(
                f"wrote {experiment.id} with {len(experiment.manifest.proposals)} proposals; "
                f"next: run_experiment and score_experiment {experiment.id}"))
        return await tools.call(work, ctx)

    @tool(ADDITIVE)
    async def run_experiment(experiment_id: str, ctx: Context) -> RunResult:
        """Rerun the target agent on every reviewed session with the experiment's config (once; later calls read
        the stored decisions back). Reports progress."""
        def work() -> RunResult:
            experiment = tools.experiment(experiment_id)
            decisions = ws.run(experiment)
            by_decision = Counter(d["decision"] for d in decisions.values())
            return RunResult(experiment=experiment.id, decisions=len(decisions), by_decision=dict(by_decision),
                             errors=by_decision.get("error", 0))
        return await tools.call(work, ctx)

    @tool(ADDITIVE)
    async def score_experiment(experiment_id: str, ctx: Context) -> Scores:
        """Score an experiment's decisions against the humans: agreement on train and held-out sessions, the
        confusion table, change against its parent, sessions fixed, regressions, and each proposal's
        leave-one-out effect. Runs the experiment first if needed (with progress)."""
        def work() -> Scores:
            results = ws.score(tools.experiment(experiment_id))
            return Scores.model_validate(results)
        return await tools.call(work, ctx)

    @tool(ADDITIVE)
    async def compare_experiments(a: str, b: str, ctx: Context) -> Comparison:
        """Compare two experiments (scored if needed): agreement per split for each and the change from a to b,
        the sessions they decide differently, and the proposals only one of them has."""
        def work() -> Comparison:
            first, second = tools.experiment(a), tools.experiment(b)
            scores = ws.score(first), ws.score(second)
            decided = ws.run(first), ws.run(second)
            agreement = {}
            for split in ("train", "heldout", "all"):
                x, y = scores[0][split]["agreement"], scores[1][split]["agreement"]
                agreement[split] = {"a": x, "b": y, "change": None if x is None or y is None else round(y - x, 4)}
            changed = [{"session_id": s.session_id, "split": ws.split(s.session_id), "human": s.human_decision,
                        "a": decided[0][s.session_id]["decision"], "b": decided[1][s.session_id]["decision"]}
                       for s in ws.sessions if decided[0][s.session_id]["decision"] != decided[1][s.session_id]["decision"]]
            ids = [{p.id for p in e.manifest.proposals} for e in (first, second)]
            return Comparison(a=first.id, b=second.id, agreement=agreement, changed_sessions=changed,
                              proposals_only_in_a=sorted(ids[0] - ids[1]), proposals_only_in_b=sorted(ids[1] - ids[0]))
        return await tools.call(work, ctx)

    @tool(READ_ONLY)
    async def list_experiments() -> ExperimentList:
        """Every experiment folder: id, parent, kind, cycle, review status, number of proposals, and train /
        held-out agreement once scored."""
        def work() -> ExperimentList:
            rows = []
            for e in ws.experiments.all():
                results = e.results or {}
                rows.append(ExperimentRow(
                    id=e.id, parent=e.manifest.parent, kind=e.manifest.kind, cycle=e.manifest.cycle, status=e.status,
                    proposals=len(e.manifest.proposals), train=results.get("train", {}).get("agreement"),
                    heldout=results.get("heldout", {}).get("agreement")))
            return ExperimentList(experiments=rows)
        return await tools.call(work)

    def experiment_file(experiment_id: str, name: str) -> str:
        try:
            path = ws.experiments.get(experiment_id).path / name
        except ImproverError as error:
            raise ResourceError(str(error)) from error
        if not path.exists():
            raise ResourceError(f"{experiment_id} has no {name} yet: run score_experiment {experiment_id} first")
        return path.read_text(encoding="utf-8")

    @server.resource("improver://experiments/{experiment_id}/manifest", mime_type="application/yaml")
    def experiment_manifest(experiment_id: str) -> str:
        """An experiment's manifest.yaml: proposals with their evidence sessions and expected effect."""
        return experiment_file(experiment_id, "manifest.yaml")

    @server.resource("improver://experiments/{experiment_id}/report", mime_type="text/markdown")
    def experiment_report(experiment_id: str) -> str:
        """An experiment's mining report (report.md)."""
        return experiment_file(experiment_id, "report.md")

    @server.resource("improver://experiments/{experiment_id}/results", mime_type="application/json")
    def experiment_results(experiment_id: str) -> str:
        """An experiment's scores (results.json), once scored."""
        return experiment_file(experiment_id, "results.json")

    @server.resource("improver://experiments/{experiment_id}/patch", mime_type="text/x-diff")
    def experiment_patch(experiment_id: str) -> str:
        """An experiment's unified diff against the target's base config (patch.diff)."""
        return experiment_file(experiment_id, "patch.diff")

    return server


# The server's tools, for the skills' tests and the mining agent's allow-list.
TOOL_NAMES = ("ingest_traces", "graph_summary", "get_session", "list_disagreements", "cluster_precedents",
              "explain_precedent", "propose_experiment", "run_experiment", "score_experiment", "compare_experiments",
              "list_experiments")


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` (loopback) for ``improver serve --http``."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproverError(f"--http {address!r}: give HOST:PORT or PORT, e.g. 127.0.0.1:8765")
    return host.strip("[]") or "127.0.0.1", int(port)
