"""Whole improvement cycles as a LangGraph ``StateGraph`` with a SQLite checkpointer.

baseline -> mine_and_propose -> evaluate -> gate -> (mine_and_propose | end). The state
holds only experiment ids; experiments on disk are the real state, and every stage
finds its own earlier output, so an interrupted cycle resumes where it stopped
(``improver cycle --resume``). The gate keeps the proposals that help: each must gain
on training sessions and not lose on held-out ones (leave-one-out); the cycle stops
when held-out agreement stops rising or after ``max_cycles``.
"""
from __future__ import annotations

import sqlite3
import uuid
from typing import TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from improver.workspace import Workspace


class CycleState(TypedDict, total=False):
    run_id: str
    max_cycles: int
    min_gain: float
    cycle: int
    parent: str
    candidate: str | None
    history: list[dict]
    stop_reason: str | None


def _row(workspace: Workspace, experiment_id: str, cycle: int, kept: int, proposed: int) -> dict:
    results = workspace.experiments.get(experiment_id).results
    return {"cycle": cycle, "experiment": experiment_id, "train": results["train"]["agreement"],
            "heldout": results["heldout"]["agreement"], "change": (results.get("change") or {}).get("heldout"),
            "kept": kept, "proposed": proposed, "regressions": len(results.get("regressions", [])),
            "errors": results["errors"]["count"]}


def build_graph(workspace: Workspace, checkpointer=None):
    def baseline(state: CycleState) -> CycleState:
        experiment = workspace.baseline()
        return {"parent": experiment.id, "cycle": 0, "history": [_row(workspace, experiment.id, 0, 0, 0)]}

    def mine_and_propose(state: CycleState) -> CycleState:
        cycle = state["cycle"] + 1
        parent = workspace.experiments.get(state["parent"])
        experiment = workspace.propose(parent, workspace.mine(parent), cycle, run_id=state["run_id"])
        if experiment is None:
            return {"cycle": cycle, "candidate": None, "stop_reason": "no precedent with enough evidence left to propose"}
        return {"cycle": cycle, "candidate": experiment.id}

    def evaluate(state: CycleState) -> CycleState:
        workspace.score(workspace.experiments.get(state["candidate"]))
        return {}

    def gate(state: CycleState) -> CycleState:
        candidate = workspace.experiments.get(state["candidate"])
        effects = candidate.results.get("per_proposal", {})
        proposals = candidate.manifest.proposals
        keep = [p.id for p in proposals if effects.get(p.id, {}).get("train", 0) > 0
                and effects.get(p.id, {}).get("heldout", 0) >= 0]
        chosen = candidate
        if keep and len(keep) < len(proposals):
            chosen = workspace.find(parent=candidate.manifest.parent, kind="gated", cycle=state["cycle"], run=state["run_id"]) \
                or workspace.subset(candidate, keep, "gated", run_id=state["run_id"])
            workspace.score(chosen)
        row = _row(workspace, chosen.id, state["cycle"], len(keep), len(proposals))
        history = state["history"] + [row]
        parent_heldout = state["history"][-1]["heldout"]
        gain = (row["heldout"] or 0) - (parent_heldout or 0)
        if not keep or gain <= 0:
            row["kept"] = 0
            return {"history": history, "stop_reason": "held-out agreement stopped rising; proposals not kept"}
        update: CycleState = {"history": history, "parent": chosen.id}
        if gain < state["min_gain"]:
            update["stop_reason"] = f"held-out agreement flattened (+{gain:.1%})"
        elif state["cycle"] >= state["max_cycles"]:
            update["stop_reason"] = f"reached --max-cycles {state['max_cycles']}"
        return update

    graph = StateGraph(CycleState)
    graph.add_node("baseline", baseline)
    graph.add_node("mine_and_propose", mine_and_propose)
    graph.add_node("evaluate", evaluate)
    graph.add_node("gate", gate)
    graph.add_edge(START, "baseline")
    graph.add_edge("baseline", "mine_and_propose")
    graph.add_conditional_edges("mine_and_propose", lambda s: END if s.get("stop_reason") else "evaluate")
    graph.add_edge("evaluate", "gate")
    graph.add_conditional_edges("gate", lambda s: END if s.get("stop_reason") else "mine_and_propose")
    return graph.compile(checkpointer=checkpointer)


def run_cycles(workspace: Workspace, max_cycles: int = 4, min_gain: float = 0.005, resume: bool = False) -> CycleState:
    """Run improvement cycles until they stop; with ``resume``, finish the last interrupted run."""
    connection = sqlite3.connect(workspace.project.data_dir / "checkpoints.sqlite", check_same_thread=False)
    try:
        saver = SqliteSaver(connection)
        graph = build_graph(workspace, saver)
        run_id = _unfinished_run(graph, saver) if resume else None
        if resume and run_id is None:
            resume = False
        run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"
        config = {"configurable": {"thread_id": run_id}, "recursion_limit": 8 * max_cycles + 10}
        inputs = None if resume else {"run_id": run_id, "max_cycles": max_cycles, "min_gain": min_gain, "history": []}
        return graph.invoke(inputs, config)
    finally:
        connection.close()


def _unfinished_run(graph, saver: SqliteSaver) -> str | None:
    """The newest run whose graph has not reached its end."""
    threads = []
    for checkpoint in saver.list(None):
        thread = checkpoint.config["configurable"]["thread_id"]
        if thread not in threads:
            threads.append(thread)
    for thread in threads:
        snapshot = graph.get_state({"configurable": {"thread_id": thread}})
        if snapshot.next:
            return thread
    return None
