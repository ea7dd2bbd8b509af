"""The review queue sent back to a real Phoenix: picks annotated on their spans, never read back as reviews."""
from __future__ import annotations

import time

import httpx
import pytest

from improver.cycle import run_cycles
from improver.demo import make_demo_project
from improver.leakscan import LeakError
from improver.queue import build_queue
from improver.queue_phoenix import QUEUE_ANNOTATION, send_to_phoenix
from improver.workspace import Workspace
from procurement.tracing import trace_to_phoenix

PROJECT = "queue"


def decision_spans(url: str) -> dict[str, str]:
    """Session id -> span id of the project's decision spans stored so far."""
    response = httpx.get(f"{url}/v1/projects/{PROJECT}/spans", params={"name": "process.run", "limit": 1000}, timeout=10)
    return {} if response.status_code == 404 else {
        s["attributes"]["session.id"]: s["context"]["span_id"] for s in response.json()["data"]}


def test_queue_picks_appear_as_annotations_on_their_spans_in_phoenix(phoenix, tmp_path):  # noqa: F811
    source = f"phoenix+{phoenix}/{PROJECT}"
    trace_to_phoenix(phoenix, PROJECT, n=40, last=24)
    traffic = trace_to_phoenix(phoenix, PROJECT, n=40, first=24, reviewed=False)
    deadline = time.monotonic() + 120
    while len(decision_spans(phoenix)) < 40:  # Phoenix stores spans asynchronously
        assert time.monotonic() < deadline, "Phoenix did not store the 40 decision spans"
        time.sleep(0.5)
    ws = Workspace(make_demo_project(tmp_path / "p", n=10))
    ws.ingest(source)
    assert len(ws.sessions) == 24
    run_cycles(ws, max_cycles=1)

    queue = build_queue(ws, n=6, random_share=0.5, seed=2)
    assert {p.session_id for p in queue.picks} <= set(traffic)
    sent = send_to_phoenix(ws, queue, source)
    assert sent["annotated"] == 6 and sent["not_found"] == []

    span_of = decision_spans(phoenix)
    params = [("span_ids", span_of[p.session_id]) for p in queue.picks] + [("include_annotation_names", QUEUE_ANNOTATION)]
    found = httpx.get(f"{phoenix}/v1/projects/{PROJECT}/span_annotations", params=params).json()["data"]
    by_span = {a["span_id"]: a for a in found}
    for pick in queue.picks:
        annotation = by_span[span_of[pick.session_id]]
        assert annotation["result"]["label"] == pick.picked_by and annotation["result"]["explanation"] == pick.reason
        assert annotation["annotator_kind"] == "CODE" and annotation["metadata"]["batch"] == queue.batch

    again = ws.ingest(source)
    assert again.reviews_new == 0 and len(ws.sessions) == 24, "queue annotations are not reviews"

    leaking = build_queue(ws, n=2, random_share=0.5, seed=3)
    leaking.picks[0].reason = "the requester asked to be called on 415-555-0132"
    with pytest.raises(LeakError, match="annotations for Phoenix project queue"):
        send_to_phoenix(ws, leaking, source)
    found = httpx.get(f"{phoenix}/v1/projects/{PROJECT}/span_annotations", params=[
        ("span_ids", span_of[p.session_id]) for p in leaking.picks] + [("include_annotation_names", QUEUE_ANNOTATION)])
    assert not any(a["metadata"]["batch"] == leaking.batch and a["result"]["explanation"] == leaking.picks[0].reason
                   for a in found.json()["data"]), "nothing was sent"
