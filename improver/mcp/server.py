"""The MCP server: improver's loop as tools any agent can call (`improver serve`).

Each tool calls one ``Workspace`` stage and returns a pydantic model (improver/mcp/models.py), so
clients get both an output schema and structured content. Tools run one at a time in a worker
thread (the stages touch SQLite and experiment folders), report progress on reruns, and turn
improver's typed errors into tool errors whose text says what to fix. Experiment ids are
validated before any path is built, trace paths must lie inside the project folder and remote
sources must be named in improver.yaml, so no tool reads or writes outside what the project names.
Over HTTP off loopback a bearer token and allowed hosts are required (improver/mcp/http.py). The tools live in one module per stage (tools_ingest, tools_graph,
tools_mining, tools_experiments), the experiment resources in resources.py; each has
``register(server, tools)``.
"""
from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Annotated, Callable, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from pydantic import BaseModel

from improver.errors import ImproverError, ProjectError
from improver.experiments import Experiment, check_id
from improver.mcp.models import ExperimentSummary, ProposalSummary
from improver.mining import MiningResult
from improver.models import ReviewedSession
from improver.project import PROJECT_FILE, Project
from improver.workspace import Workspace

T = TypeVar("T")
log = logging.getLogger("improver.mcp")
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
# Writes new files in the project (experiments, caches) but never changes or deletes existing ones.
ADDITIVE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
CREATES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
# Parameters several tools share, each with the description clients show.
ExperimentId = Annotated[str, Field(description="an experiment id such as '0002-cycle-1' (list_experiments shows them)")]
Parent = Annotated[str | None, Field(description="the experiment whose decisions are mined; default: the baseline "
                                                 "(the target's own config, made and scored once)")]
TITLES = {"ingest_traces": "Ingest traces", "graph_summary": "Summarise the context graph",
          "get_session": "One reviewed session in context", "list_disagreements": "List human overrides",
          "cluster_precedents": "Mine precedents", "explain_precedent": "Explain a precedent",
          "propose_experiment": "Propose an experiment", "run_experiment": "Rerun the agent",
          "score_experiment": "Score an experiment", "compare_experiments": "Compare two experiments",
          "list_experiments": "List experiments", "run_cycle": "Run improvement cycles",
          "review_proposal": "Accept or reject proposals", "review_queue": "Pick sessions to review",
          "predicted_overrides": "Predict overrides", "precedents_over_time": "Precedents over time"}
INSTRUCTIONS = """improver mines human reviewers' overrides of an AI agent into tested config changes.
Typical order: graph_summary, list_disagreements, cluster_precedents, explain_precedent, propose_experiment,
run_experiment, score_experiment, compare_experiments. Rules: cite evidence from at least 3 sessions for any
claim about a precedent; judge a proposal by its held-out score, never by training agreement alone; humans
approve what ships (propose and score; do not present an experiment as merged)."""


class Deferred:
    """Stands in for the Workspace until the folder holds an improver.yaml, so the server starts anywhere:
    each use loads it, and while there is none the tool answers how to make one."""

    def __init__(self, tools: "ImproverTools"):
        self._tools = tools

    def __getattr__(self, name: str):
        return getattr(self._tools.load(), name)


class ImproverTools:
    """The tools' bodies over one Workspace; each runs in a worker thread, one at a time."""

    def __init__(self, project: Project | str | Path):
        self.root = (project.root if isinstance(project, Project) else Path(project)).resolve()
        self._workspace = Workspace(project) if isinstance(project, Project) else None
        self.workspace = self._workspace or Deferred(self)
        self._lock = anyio.Lock()
        self._mined: dict[tuple[str, int], MiningResult] = {}
        self._by_id: tuple[list, dict[str, ReviewedSession]] = ([], {})

    def load(self) -> Workspace:
        """The project's Workspace; ProjectError saying how to make the project while it has no improver.yaml."""
        if self._workspace is None:
            if not (self.root / PROJECT_FILE).exists():
                raise ProjectError(f"no {PROJECT_FILE} in {self.root} yet: call the init_project tool (or run "
                                   "`improver init` there), then ingest_traces")
            self._workspace = Workspace(self.root)
        return self._workspace

    @property
    def project(self) -> Project:
        return self.load().project

    async def call(self, work: Callable[[], T], ctx: Context | None = None) -> T:
        """Run ``work`` in a thread with progress sent to the client; typed errors become tool errors."""
        token = anyio.lowlevel.current_token()

        def progress(label: str, done: int, total: int) -> None:
            if ctx is not None:
                anyio.from_thread.run(ctx.report_progress, done, total, label, token=token)

        async with self._lock:
            try:
                workspace = self.load()
            except ProjectError:  # no project yet: the tool's own use of it says how to make one
                workspace = None
            if workspace is not None:
                workspace.progress = progress
            try:
                return await anyio.to_thread.run_sync(lambda: self.checked(work()))
            except ImproverError as error:
                raise ToolError(str(error)) from error
            except ToolError:
                raise
            except Exception as error:  # a bug: name it (the traceback goes to the server log), never a bare failure
                log.exception("tool failed")
                raise ToolError(f"unexpected {type(error).__name__} (a bug in improver; the server log has the "
                                "traceback)") from error
            finally:
                if workspace is not None:
                    workspace.progress = None

    # helpers used inside worker threads
    def checked(self, result: T) -> T:
        """``result`` once the leak scan finds nothing in it (LeakError otherwise: the answer is not sent)."""
        text = result.model_dump_json() if isinstance(result, BaseModel) else str(result)
        self.workspace.leak_scan.check(text, "this MCP answer")
        return result

    def experiment(self, experiment_id: str | None) -> Experiment:
        """The named experiment, or the baseline (made, run and scored once) when None."""
        if experiment_id is None:
            return self.workspace.baseline()
        return self.workspace.experiments.get(check_id(experiment_id))

    def session(self, session_id: str) -> ReviewedSession:
        listed = self.workspace.require_sessions()
        if self._by_id[0] is not listed:  # indexed once per sessions list
            self._by_id = (listed, {s.session_id: s for s in listed})
        sessions = self._by_id[1]
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


def tool(server: MCPServer, annotations: ToolAnnotations, title: str | None = None):
    """Register a tool whose description is its docstring on one line."""
    def register(fn):
        return server.tool(annotations=annotations, title=title or TITLES.get(fn.__name__),
                           description=" ".join(fn.__doc__.split()))(fn)
    return register


def build_server(project: Project | str | Path = ".") -> MCPServer:
    """An MCP server whose tools work on the project folder ``project``."""
    from improver.mcp import resources, tools_experiments, tools_graph, tools_ingest, tools_init, tools_mining
    from improver.mcp import prompts, tools_cycle, tools_queue

    tools = ImproverTools(project)
    server = MCPServer("improver", instructions=INSTRUCTIONS, version="0.1.0", log_level="WARNING")
    for module in (tools_init, tools_ingest, tools_graph, tools_mining, tools_experiments, tools_cycle, tools_queue,
                   resources, prompts):
        module.register(server, tools)
    return server


# The server's tools, for the skills' tests and the mining agent's allow-list.
TOOL_NAMES = ("init_project", "ingest_traces", "graph_summary", "get_session", "list_disagreements", "cluster_precedents",
              "explain_precedent", "propose_experiment", "run_experiment", "score_experiment", "compare_experiments",
              "list_experiments", "run_cycle", "review_proposal", "review_queue", "predicted_overrides", "precedents_over_time")


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` (loopback) for ``improver serve --http``."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproverError(f"--http {address!r}: give HOST:PORT or PORT, e.g. 127.0.0.1:8765")
    return host.strip("[]") or "127.0.0.1", int(port)
