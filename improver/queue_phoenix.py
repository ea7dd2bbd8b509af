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
annotation is never mistaken for a review. Uses Phoenix's own client library
(``pip install 'agent-improver[phoenix]'``); ``PHOENIX_API_KEY`` goes only to a server the
project names in improver.yaml (``sources: {remote: [...]}``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from improver.errors import ImproverError, require
from improver.sources.mapping import SpanMapping
from improver.sources.phoenix import SCHEMES, api_key_for, origin

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
    client_module = require("phoenix.client", "sending the review queue to Phoenix", "phoenix")
    httpx = require("httpx", "sending the review queue to Phoenix", "phoenix")
    base = origin(spec)
    key = api_key_for(spec, ws.project.remote_sources)
    mapping = SpanMapping.from_project(ws.project)
    http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=60)
    client = client_module.Client(http_client=http)  # our own httpx client: no key read from the environment
    wanted = {p.session_id for p in queue.picks}
    try:
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
        if annotations:
            client.spans.log_span_annotations(span_annotations=annotations, sync=True)
    except httpx.HTTPError as error:  # never repeat what the server answered: give the status and the fix
        status = getattr(getattr(error, "response", None), "status_code", None)
        raise ImproverError(f"sending the queue to Phoenix at {base} failed ({type(error).__name__}"
                            + (f", HTTP {status}" if status else "") + "); check the URL and project, that the server "
                            "runs, and PHOENIX_API_KEY with the server named in improver.yaml sources.remote") from None
    finally:
        http.close()
    return {"annotated": len(annotations), "not_found": sorted(wanted - set(span_of)), "project": project, "url": base}
