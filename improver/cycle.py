"""Whole improvement cycles as a LangGraph ``StateGraph`` with a SQLite checkpointer.

baseline -> mine_and_propose -> evaluate -> gate -> (mine_and_propose | end). The state
holds only experiment ids; experiments on disk are the real state, and every stage
finds its own earlier output, so an interrupted cycle resumes where it stopped
(``improver cycle --resume``), and a new run on unchanged reviews takes the experiment an
earlier run mined from the same parent and inputs (``Workspace.mined_before``) without mining
again. Proposals are cross-validated (``improver.crossval``): only precedents most folds
find, with no out-of-fold loss, are proposed. The
gate keeps a cycle when its out-of-fold agreement rises over its parent's; the cycle
stops when it stops rising or after ``max_cycles``. A locked test split (``holdout:``)
is scored and reported, never gated on. A run holds the project's write lock throughout,
with the cyclic garbage collector paused (its rows and answers hold no cycles);
the checkpoint store keeps only the latest checkpoint of the newest runs (pruned before
and after each run).
"""
from __future__ import annotations

import sqlite3
import uuid
from typing import TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from improver import text
from improver.workspace import Workspace, collector_paused

KEEP_RUNS = 20  # runs whose latest checkpoint is kept (resume needs only the latest)


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
    cv = results.get("cv") or {}
    return {"cycle": cycle, "experiment": experiment_id, "train": results["train"]["agreement"],
            "heldout": results["heldout"]["agreement"], "change": (results.get("change") or {}).get("heldout"),
            "cv": cv.get("agreement"), "cv_low": cv.get("low"), "cv_high": cv.get("high"), "cv_change": cv.get("change"),
            "kept": kept, "proposed": proposed, "regressions": len(results.get("regressions", [])),
            "errors": results["errors"]["count"]}


def build_graph(workspace: Workspace, checkpointer=None):
    def baseline(state: CycleState) -> CycleState:
        # The target's workers import it while the sessions are read. Mining clusters reviewers' notes
        # next: import scipy while the baseline waits on those workers, once the sessions are read (the
        # import and the reading would share the GIL). A method reads them, not ``workspace.sessions``:
        # compiling the graph evaluates the attributes its nodes read (LangGraph looks for subgraphs).
        workspace.start_target()
        workspace.require_sessions()
        text.prefetch()
        experiment = workspace.baseline()
        return {"parent": experiment.id, "cycle": 0, "history": [_row(workspace, experiment.id, 0, 0, 0)]}

    def mine_and_propose(state: CycleState) -> CycleState:
        cycle = state["cycle"] + 1
        parent = workspace.experiments.get(state["parent"])
        experiment = workspace.find(parent=parent.id, kind="cycle", cycle=cycle, run=state["run_id"]) or \
            workspace.mined_before(parent, cycle)
        if experiment is None:
            workspace.prepare_target()  # the workers the next reruns use import while this process mines
            cv = workspace.cross_validate(parent)
            experiment = workspace.propose(parent, cv.result, cycle, run_id=state["run_id"], cv=cv)
        if experiment is None:
            return {"cycle": cycle, "candidate": None,
                    "stop_reason": "no precedent with enough evidence, found by most folds, left to propose"}
        return {"cycle": cycle, "candidate": experiment.id}

    def evaluate(state: CycleState) -> CycleState:
        workspace.score(workspace.experiments.get(state["candidate"]))
        return {}

    def gate(state: CycleState) -> CycleState:
        candidate = workspace.experiments.get(state["candidate"])
        proposals = candidate.manifest.proposals
        dropped = len(candidate.manifest.mining.get("cv", {}).get("dropped", {}))
        row = _row(workspace, candidate.id, state["cycle"], len(proposals), len(proposals) + dropped)
        history = state["history"] + [row]
        gain = (row["cv"] or 0) - (state["history"][-1]["cv"] or 0)
        if gain <= 0:
            row["kept"] = 0
            return {"history": history, "stop_reason": "out-of-fold agreement stopped rising; proposals not kept"}
        update: CycleState = {"history": history, "parent": candidate.id}
        if gain < state["min_gain"]:
            update["stop_reason"] = f"out-of-fold agreement flattened (+{gain:.1%})"
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
    """Run improvement cycles until they stop; with ``resume``, finish the last interrupted run
    (when none is, the last run's outcome is returned; with no run at all, a new one starts)."""
    with workspace.writing("improver cycle"), collector_paused():
        return _run_cycles(workspace, max_cycles, min_gain, resume)


def _run_cycles(workspace: Workspace, max_cycles: int, min_gain: float, resume: bool) -> CycleState:
    connection = sqlite3.connect(workspace.project.data_dir / "checkpoints.sqlite", check_same_thread=False)
    try:
        prune(connection)
        saver = SqliteSaver(connection)
        graph = build_graph(workspace, saver)
        run_id = _unfinished_run(graph, saver) if resume else None
        if resume and run_id is None:
            newest = next(iter(saver.list(None, limit=1)), None)
            if newest is not None:  # nothing interrupted: the last run's outcome, not a new run
                return graph.get_state({"configurable": {"thread_id": newest.config["configurable"]["thread_id"]}}).values
            resume = False
        run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"
        config = {"configurable": {"thread_id": run_id}, "recursion_limit": 8 * max_cycles + 10}
        inputs = None if resume else {"run_id": run_id, "max_cycles": max_cycles, "min_gain": min_gain, "history": []}
        return graph.invoke(inputs, config)
    finally:
        try:
            prune(connection)
        finally:
            connection.close()


def prune(connection: sqlite3.Connection, keep_runs: int = KEEP_RUNS) -> None:
    """Keep only each run's latest checkpoint (all a resume needs), and only the newest runs."""
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"checkpoints", "writes"} <= tables:
        return
    with connection:
        latest = "SELECT thread_id, checkpoint_ns, MAX(checkpoint_id) FROM checkpoints GROUP BY thread_id, checkpoint_ns"
        connection.execute(f"DELETE FROM checkpoints WHERE (thread_id, checkpoint_ns, checkpoint_id) NOT IN ({latest})")
        old = connection.execute("SELECT thread_id FROM checkpoints GROUP BY thread_id ORDER BY MAX(checkpoint_id) DESC "
                                 "LIMIT -1 OFFSET ?", (keep_runs,)).fetchall()
        connection.executemany("DELETE FROM checkpoints WHERE thread_id = ?", old)
        connection.execute("DELETE FROM writes WHERE (thread_id, checkpoint_ns, checkpoint_id) NOT IN "
                           "(SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints)")
    connection.execute("VACUUM")


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
