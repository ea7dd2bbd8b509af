"""MCP tools for the experiment stages: run, score, compare and list experiments."""
from __future__ import annotations

from collections import Counter

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from improver.mcp.models import Comparison, ExperimentList, ExperimentRow, RunResult, Scores
from improver.mcp.server import ADDITIVE, READ_ONLY, ExperimentId, ImproverTools, tool


def register(server: MCPServer, tools: ImproverTools) -> None:
    ws = tools.workspace

    @tool(server, ADDITIVE)
    async def run_experiment(experiment_id: ExperimentId, ctx: Context) -> RunResult:
        """Rerun the target agent on every reviewed session with the experiment's config (once; later calls read
        the stored decisions back). Reports progress."""
        def work() -> RunResult:
            experiment = tools.experiment(experiment_id)
            decisions = ws.run(experiment)
            by_decision = Counter(d["decision"] for d in decisions.values())
            return RunResult(experiment=experiment.id, decisions=len(decisions), by_decision=dict(by_decision),
                             errors=by_decision.get("error", 0))
        return await tools.call(work, ctx)

    @tool(server, ADDITIVE)
    async def score_experiment(experiment_id: ExperimentId, ctx: Context) -> Scores:
        """Score an experiment's decisions against the humans: agreement on train and held-out sessions, the
        confusion table, change against its parent, sessions fixed, regressions, and each proposal's
        leave-one-out effect. Runs the experiment first if needed (with progress)."""
        def work() -> Scores:
            results = ws.score(tools.experiment(experiment_id))
            return Scores.model_validate(results)
        return await tools.call(work, ctx)

    @tool(server, ADDITIVE)
    async def compare_experiments(a: Annotated[str, Field(description="the experiment compared from, e.g. the parent")],
                                  b: Annotated[str, Field(description="the experiment compared to")], ctx: Context) -> Comparison:
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

    @tool(server, READ_ONLY)
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
            return ExperimentList(experiments=rows, skipped=ws.experiments.skipped)
        return await tools.call(work)
