"""The review queue sent back to Phoenix, where the team reviews: each pick annotated on its span.

For a project whose traces come from Phoenix, ``send_to_phoenix`` finds each picked
session's decision span (the span mapping's ``decision_spans`` names, matched by
``session.id``) and logs one span annotation per pick, named ``QUEUE_ANNOTATION``, with
annotator kind ``CODE``: label = how it was picked, score = its priority, explanation =
why, metadata = batch, pick probability and the decision the rule behind it predicts.
Phoenix shows it on the span and its trace, and its spans view filters on it (e.g.
``annotations['improver review queue'].label == 'predicted-override'``), so reviewers
open exactly the queued sessions and annotate them as they already do. improver's
Phoenix ingest reads only the review annotation names of the mapping, so a queue
annotation is never mistaken for a review. The annotations pass the project's leak scan
before they are sent. Uses Phoenix's own client library
(``pip install 'agent-improver[phoenix]'``); ``PHOENIX_API_KEY`` goes only to a server the
project names in improver.yaml (``sources: {remote: [...]}``).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from improver.errors import ImproverError
from improver.sources.mapping import SpanMapping
from improver.sources.phoenix import SCHEMES, origin, phoenix_client

if TYPE_CHECKING:
    from improver.queue import Queue
    from improver.workspace import Workspace

QUEUE_ANNOTATION = "improver review queue"


def send_to_phoenix(ws: "Workspace", queue: "Queue", spec: str) -> dict:
    """Annotate the picked sessions' decision spans in Phoenix; counts of annotated and not found."""
    parts = urlsplit(spec)
    project = parts.path.strip("/")
    if parts.scheme not in SCHEMES or not parts.netloc or not project:
        raise ImproverError(f"--to {spec!r}: write phoenix+http://HOST:PORT/PROJECT (the project the traces came from)")
    mapping = SpanMapping.from_project(ws.project)
    wanted = {p.session_id for p in queue.picks}
    with phoenix_client(spec, ws.project.remote_sources, "sending the review queue to Phoenix") as client:
        spans = client.spans.get_spans(project_identifier=project, name=mapping.decision_spans, limit=1_000_000)
        span_of = {}
        for span in spans:
            session = (span.get("attributes") or {}).get("session.id")
            if session in wanted:
                span_of.setdefault(session, span["context"]["span_id"])
        annotations = [{"span_id": span_of[p.session_id], "name": QUEUE_ANNOTATION, "annotator_kind": "CODE",
                        "identifier": f"{queue.batch}-{p.session_id}",
                        "result": {"label": p.picked_by, "score": p.priority, "explanation": p.reason},
                        "metadata": {"batch": queue.batch, "probability": p.probability, "predicted": p.predicted,
                                     "reference": queue.reference}}
                       for p in queue.picks if p.session_id in span_of]
        if annotations:  # the final leak scan first, as for everything that leaves the store
            ws.leak_scan.check(json.dumps(annotations), f"the review queue's annotations for Phoenix project {project}")
            client.spans.log_span_annotations(span_annotations=annotations, sync=True)
    return {"annotated": len(annotations), "not_found": sorted(wanted - set(span_of)), "project": project,
            "url": origin(spec)}
