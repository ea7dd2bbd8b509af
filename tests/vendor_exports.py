"""The example's reviewed sessions as LangSmith and Langfuse exports, built with those SDKs' own models.

``langsmith_export`` writes ``Run`` and ``Feedback`` objects (``langsmith.schemas``) as the JSON
their ``model_dump_json`` gives; ``langfuse_export`` writes ``ObservationV2`` and ``Score``
objects (``langfuse.api``) as the public API's camelCase JSON. Overrides arrive as a human
correction (LangSmith) or a CORRECTION score (Langfuse) for some sessions and as review
feedback or an annotation-queue score for the rest; model and evaluator feedback is mixed in.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from procurement.tracing import review_note, reviewed_sessions

PROJECT = uuid.UUID(int=7)


def _id(*parts) -> uuid.UUID:
    return uuid.uuid5(PROJECT, "/".join(map(str, parts)))


def _time(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def agent_output(decision: dict) -> dict:
    return {k: decision[k] for k in ("decision", "confidence", "reasoning", "cited")}


def langsmith_export(folder: Path, n: int, seed: int = 7) -> list[Path]:
    from langsmith.schemas import Feedback, FeedbackSourceBase, Run

    runs, feedback = [], []
    for index, (decision, review) in enumerate(reviewed_sessions(n, seed)):
        session, start = decision["session_id"], _time(decision["ts"])
        thread_key = ("thread_id", "session_id", "conversation_id")[index % 3]  # how LangSmith groups threads
        run_id = _id(session, "run")
        runs.append(Run(id=run_id, trace_id=run_id, name="process.run", run_type="chain", start_time=start,
                        end_time=start + timedelta(seconds=1), inputs={"case": decision["case"]},
                        outputs=agent_output(decision), extra={"metadata": {thread_key: session}}, session_id=PROJECT,
                        dotted_order=f"{start:%Y%m%dT%H%M%S%fZ}{run_id}"))
        llm_id = _id(session, "llm")
        runs.append(Run(id=llm_id, trace_id=run_id, parent_run_id=run_id, name="ChatModel", run_type="llm",
                        start_time=start, inputs={"messages": []}, outputs={"generations": []},
                        extra={"metadata": {thread_key: session}}))
        human = FeedbackSourceBase(type="app", user_name=review["reviewer"], user_id=str(_id(review["reviewer"])))
        reviewed, note = _time(review["ts"]), review_note(review)
        if review["decision"] != decision["decision"] and index % 2 == 0:  # a human correction of the agent's output
            feedback.append(Feedback(id=_id(session, "correction"), created_at=reviewed, modified_at=reviewed,
                                     run_id=run_id, trace_id=run_id, key="correction", comment=note,
                                     correction={"decision": review["decision"]}, feedback_source=human))
        else:
            feedback.append(Feedback(id=_id(session, "review"), created_at=reviewed, modified_at=reviewed, run_id=run_id,
                                     trace_id=run_id, key="Reviewer Decision", value=review["decision"], comment=note,
                                     feedback_source=human))
        feedback.append(Feedback(id=_id(session, "judge"), created_at=reviewed, modified_at=reviewed, run_id=run_id,
                                 trace_id=run_id, key="helpfulness", score=0.8, feedback_source=FeedbackSourceBase(type="model")))
    (folder / "runs.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in runs))
    (folder / "feedback.jsonl").write_text("".join(f.model_dump_json() + "\n" for f in feedback))
    return [folder / "runs.jsonl", folder / "feedback.jsonl"]


def langfuse_export(folder: Path, n: int, seed: int = 7) -> list[Path]:
    from langfuse.api.commons.types import ObservationV2, Score_Categorical, Score_Correction, Score_Numeric

    observations, scores = [], []
    for index, (decision, review) in enumerate(reviewed_sessions(n, seed)):
        session, start, reviewed = decision["session_id"], _time(decision["ts"]), _time(review["ts"])
        trace_id, root_id = _id(session, "trace").hex, _id(session, "root").hex[:16]
        observations.append(ObservationV2(id=root_id, trace_id=trace_id, type="CHAIN", name="process.run",
                                          start_time=start, project_id="procurement", session_id=session,
                                          is_root_observation=True, input={"case": decision["case"]},
                                          output=agent_output(decision), metadata={}))
        observations.append(ObservationV2(id=_id(session, "gen").hex[:16], trace_id=trace_id, type="GENERATION",
                                          name="ChatModel", start_time=start, project_id="procurement", session_id=session,
                                          parent_observation_id=root_id, input=[], output={"content": "..."}))
        target = [dict(trace_id=trace_id), dict(session_id=session), dict(trace_id=trace_id, observation_id=root_id)][index % 3]
        common = dict(id=_id(session, "score").hex, name="Reviewer Decision", timestamp=reviewed, created_at=reviewed,
                      updated_at=reviewed, author_user_id=review["reviewer"], comment=review_note(review),
                      environment="default", **target)
        if review["decision"] != decision["decision"] and index % 2 == 0:
            scores.append(Score_Correction(value=0, string_value=review["decision"], source="ANNOTATION", **common))
        else:
            scores.append(Score_Categorical(value=0, string_value=review["decision"], source="ANNOTATION",
                                            queue_id="review-queue", **common))
        scores.append(Score_Numeric(value=0.8, id=_id(session, "eval").hex, name="helpfulness", source="EVAL",
                                    timestamp=reviewed, created_at=reviewed, updated_at=reviewed, environment="default",
                                    trace_id=trace_id))
    dump = lambda item: item.model_dump(by_alias=True, mode="json", exclude_none=True)  # noqa: E731
    (folder / "observations.json").write_text(json.dumps([dump(o) for o in observations], indent=2))
    (folder / "scores.jsonl").write_text("".join(json.dumps(dump(s)) + "\n" for s in scores))
    return [folder / "observations.json", folder / "scores.jsonl"]
