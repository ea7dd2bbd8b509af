"""A live Phoenix server: ``phoenix+http://host:port/<project>``, pulled through its REST API.

Spans come from ``GET /v1/projects/{project}/spans`` (only the mapping's decision and
review span names, oldest first, a page at a time) and their annotations from
``GET /v1/projects/{project}/span_annotations``. The pull is incremental: the position
after the last span and the spans still waiting for a review annotation are kept as the
source's cursor in the trace store, written only once everything pulled is stored, so
an interrupted pull is simply repeated.

``PHOENIX_API_KEY`` is sent as a bearer token only to a server the project names in
improver.yaml (``sources: {remote: [phoenix+https://host/project]}``), never to a URL
that merely arrives on the command line or from an MCP client, and errors never
repeat what the server answered (its body may hold anything).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit

import httpx

from improver.errors import ImproverError, TraceError, require
from improver.models import Event, Quarantined
from improver.sources.mapping import SpanAssembler, SpanMapping

SCHEMES = ("phoenix+http", "phoenix+https")
PAGE = 500
ANNOTATION_BATCH = 100  # span ids per annotations request (they travel in the query string)
MAX_AWAITING = 20000


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL, lower-cased, with the ``phoenix+`` prefix dropped."""
    parts = urlsplit(url)
    return f"{parts.scheme.removeprefix('phoenix+')}://{parts.netloc}".lower()


def api_key_for(url: str, named: list[str]) -> str | None:
    """``PHOENIX_API_KEY`` when ``url`` is on a server the project names (``named``), else None."""
    key = os.environ.get("PHOENIX_API_KEY")
    return key if key and origin(url) in {origin(n) for n in named} else None


@contextmanager
def phoenix_client(url: str, named: list[str], doing: str):
    """Phoenix's own client (the ``phoenix`` extra) on improver's httpx client, so ``PHOENIX_API_KEY`` goes
    only to a server the project names; an HTTP error becomes an ImproverError with the status and the fix,
    never the server's body. ``doing`` names the work in messages ("pushing results to Phoenix")."""
    client_module = require("phoenix.client", doing, "phoenix")
    key, base = api_key_for(url, named), origin(url)
    http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=60)
    try:
        yield client_module.Client(http_client=http)
    except httpx.HTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        raise ImproverError(f"{doing} at {base} failed ({type(error).__name__}" + (f", HTTP {status}" if status else "")
                            + "); check the URL, that the server runs, and PHOENIX_API_KEY with the server named in "
                            "improver.yaml sources.remote") from None
    finally:
        http.close()


class PhoenixSource:
    def __init__(self, url: str, mapping: SpanMapping | None = None, numeric_fields=(), timeout: float = 30.0,
                 api_key: str | None = None):
        parts = urlsplit(url)
        self.project = parts.path.strip("/")
        if parts.scheme not in SCHEMES or not parts.netloc or not self.project or "/" in self.project:
            raise TraceError(f"{url!r} is not a Phoenix source; write phoenix+http://HOST:PORT/PROJECT")
        self.base = f"{parts.scheme.removeprefix('phoenix+')}://{parts.netloc}"
        self.name = url
        self.mapping = mapping or SpanMapping()
        self.numeric_fields = numeric_fields
        self.timeout = timeout
        self.api_key = api_key
        self.cleaned: Counter = Counter()
        self.after: str | None = None  # Phoenix's global id of the last span pulled
        self.awaiting: dict[str, str] = {}  # span id -> session, for spans with no review yet
        self.position: str | None = None  # the cursor to store once this pull is stored
        self.assembler: SpanAssembler | None = None

    def resume(self, position: str | None) -> None:
        """Continue after a previous pull's position (from ``TraceStore.cursor``)."""
        if position:
            state = json.loads(position)
            self.after, self.awaiting = state.get("after"), dict(state.get("awaiting", {}))

    def _get(self, client: httpx.Client, path: str, params) -> dict:
        try:
            response = client.get(path, params=params)
        except httpx.HTTPError as error:
            raise TraceError(f"cannot reach Phoenix at {self.base} ({type(error).__name__}); is the server running?") from None
        if response.status_code == 404:
            raise TraceError(f"Phoenix at {self.base} has no project {self.project!r} (HTTP 404)")
        if response.status_code in (401, 403):
            how = ("check PHOENIX_API_KEY" if self.api_key else "set PHOENIX_API_KEY and name this server in "
                   "improver.yaml (sources: {remote: [" + self.name + "]}): the key is sent only to servers named there")
            raise TraceError(f"Phoenix at {self.base} refused the request (HTTP {response.status_code}); {how}")
        if response.status_code >= 400:
            raise TraceError(f"Phoenix at {self.base} answered HTTP {response.status_code} to {path}")
        try:
            return response.json()
        except ValueError:
            raise TraceError(f"Phoenix at {self.base} answered {path} with something that is not JSON; "
                             "is this URL a Phoenix server?") from None

    def _spans(self, client: httpx.Client) -> Iterator[dict]:
        cursor = self.after
        names = self.mapping.decision_spans + self.mapping.review_spans
        while True:
            params = [("sort", "id"), ("order", "asc"), ("limit", PAGE)] + [("name", n) for n in names]
            if cursor:
                params.append(("cursor", cursor))
            page = self._get(client, f"/v1/projects/{self.project}/spans", params)
            for span in page.get("data", []):
                if span.get("id") != self.after:  # the cursor's own span was pulled last time
                    self.after = span.get("id") or self.after
                    yield span
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def _annotations(self, client: httpx.Client, span_ids: list[str]) -> Iterator[dict]:
        names = self.mapping.review_annotations + self.mapping.note_annotations
        for start in range(0, len(span_ids), ANNOTATION_BATCH):
            cursor = None
            while True:
                params = [("span_ids", s) for s in span_ids[start:start + ANNOTATION_BATCH]]
                params += [("include_annotation_names", n) for n in names] + [("limit", 1000)]
                if cursor:
                    params.append(("cursor", cursor))
                page = self._get(client, f"/v1/projects/{self.project}/span_annotations", params)
                yield from page.get("data", [])
                cursor = page.get("next_cursor")
                if not cursor:
                    break

    def events(self) -> Iterator[Event | Quarantined]:
        assembler = self.assembler = SpanAssembler(self.mapping, self.name, self.cleaned, self.numeric_fields)
        assembler.sessions.update(self.awaiting)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        with httpx.Client(base_url=self.base, headers=headers, timeout=self.timeout, follow_redirects=False) as client:
            number = 0
            for span in self._spans(client):
                number += 1
                assembler.read()
                yield from assembler.add_span(span, number)
            span_ids = list(assembler.sessions)
            reviewed = set()
            for annotation in self._annotations(client, span_ids):
                number += 1
                if annotation.get("name") in self.mapping.review_annotations:
                    reviewed.add(annotation.get("span_id"))
                assembler.read()
                yield from assembler.add_annotation(annotation, number)
        yield from assembler.finish()
        reviewed_sessions = {assembler.sessions[s] for s in reviewed if s in assembler.sessions}
        awaiting = {s: session for s, session in assembler.sessions.items() if session not in reviewed_sessions}
        self.position = json.dumps({"after": self.after, "awaiting": dict(list(awaiting.items())[-MAX_AWAITING:])})
