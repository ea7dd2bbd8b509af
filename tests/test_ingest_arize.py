"""Arize layouts: spans from the real OpenInference instrumentation, annotations in the Arize SDK's own columns.

The spans are written the way the procurement agent writes them (``procurement.tracing.trace_to_otlp``:
the real OpenInference LangChain instrumentation, protobuf's JSON of OTLP requests); the
annotations are the Arize SDK's DataFrame (its column names from ``arize.spans.columns``) and
its wire form (the Arrow table ``client.spans.update_annotations`` sends, captured at the
Flight client). Spans and annotations are ingested by separate ``improver ingest`` commands.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import asdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from improver.cli import app
from improver.demo import make_demo_project
from improver.errors import TraceError
from improver.sources import open_source
from improver.sources.arize import ArizeSource
from improver.workspace import Workspace
from procurement.tracing import trace_to_otlp, write_otlp_json

N = 24


@pytest.fixture(scope="module")
def traced():
    """(spans, annotation rows) of N reviewed sessions, and those sessions as the native traces give them."""
    spans, annotations = trace_to_otlp(n=N)
    return spans, annotations


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    folder = tmp_path_factory.mktemp("native")
    ws = Workspace(make_demo_project(folder / "p", n=N))
    ws.ingest(str(folder / "p" / "traces.jsonl"))
    return {s.session_id: asdict(s) for s in ws.sessions}


def sdk_dataframe(annotations: list[dict]):
    """The annotations as the Arize SDK's DataFrame, its column names taken from the SDK itself."""
    import pandas as pd
    from arize.spans.columns import (ANNOTATION_COLUMN_PREFIX, ANNOTATION_LABEL_SUFFIX, ANNOTATION_NOTES_COLUMN_NAME,
                                     ANNOTATION_UPDATED_BY_SUFFIX, SPAN_SPAN_ID_COL)

    def column(name, suffix):
        return f"{ANNOTATION_COLUMN_PREFIX}{name}{suffix}"

    return pd.DataFrame({
        SPAN_SPAN_ID_COL.name: [a["context.span_id"] for a in annotations],
        column("Reviewer Decision", ANNOTATION_LABEL_SUFFIX): [a["annotation.Reviewer Decision.label"] for a in annotations],
        column("Reviewer Decision", ANNOTATION_UPDATED_BY_SUFFIX): [a["annotation.Reviewer Decision.updated_by"]
                                                                    for a in annotations],
        column("Reviewer Confidence", ANNOTATION_LABEL_SUFFIX): [a["annotation.Reviewer Confidence.label"] for a in annotations],
        column("Reviewer Name", ANNOTATION_LABEL_SUFFIX): [a["annotation.Reviewer Name.label"] for a in annotations],
        ANNOTATION_NOTES_COLUMN_NAME: [a["annotation.notes"] for a in annotations],
    })


def sdk_wire_table(frame, monkeypatch):
    """The Arrow table the SDK's ``update_annotations`` sends (notes as lists of JSON objects), captured
    where it would leave for Arize's Flight server."""
    import arize.spans.client as spans_client
    from arize import ArizeClient
    from arize._generated.protocol.flight import flight_pb2

    sent = []

    class CapturingFlightClient:
        def __init__(self, **_):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def log_arrow_table(self, *, reader, **_):
            sent.append(reader.read_all())
            return flight_pb2.WriteSpanAnnotationResponse()

    monkeypatch.setattr(spans_client, "ArizeFlightClient", CapturingFlightClient)
    ArizeClient(api_key="offline").spans.update_annotations(space_id="space", project_name="procurement", dataframe=frame)
    [table] = sent
    return table


def write_annotations(form: str, annotations: list[dict], folder: Path, monkeypatch) -> Path:
    import pyarrow.parquet as pq

    frame = sdk_dataframe(annotations)
    if form == "dataframe.parquet":
        frame.to_parquet(folder / "annotations.parquet")
        return folder / "annotations.parquet"
    if form == "dataframe.csv":
        frame.to_csv(folder / "annotations.csv", index=False)
        return folder / "annotations.csv"
    table = sdk_wire_table(frame, monkeypatch)
    assert table.schema.field("annotation.notes").type.value_type == "string"  # list<string> of JSON objects
    if form == "wire.parquet":
        pq.write_table(table, folder / "annotations.parquet")
        return folder / "annotations.parquet"
    path = folder / "annotations.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in table.to_pylist()))
    return path


def cli_ingest(project: Path, path: Path) -> dict:
    result = CliRunner().invoke(app, ["ingest", str(path), "--project", str(project), "--json"])
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.output)
    assert report["rows_read"] == (report["rows_joined"] + sum(report["rows_ignored"].values()) + report["rows_waiting"]
                                   + report["quarantined"])
    return report


@pytest.mark.parametrize("form", ["dataframe.parquet", "dataframe.csv", "wire.jsonl", "wire.parquet"])
@pytest.mark.parametrize("annotations_first", [False, True])
def test_arize_annotations_join_otlp_spans_across_ingests_in_either_order(traced, native, form, annotations_first,
                                                                         tmp_path, monkeypatch):
    spans, annotations = traced
    write_otlp_json(tmp_path / "otlp.json", spans, pretty=True)  # MessageToJson's default: indented, base64 ids
    annotation_file = write_annotations(form, annotations, tmp_path, monkeypatch)
    assert isinstance(open_source(str(annotation_file)), ArizeSource)
    project = make_demo_project(tmp_path / "p", n=N)

    files = [annotation_file, tmp_path / "otlp.json"] if annotations_first else [tmp_path / "otlp.json", annotation_file]
    first, second = (cli_ingest(project, f) for f in files)
    if annotations_first:
        assert (first["events"], first["rows_waiting"], first["waiting_total"]) == (0, N, N)
        assert first["waiting_for"][0].startswith("span ")
        assert (second["decisions_new"], second["reviews_new"], second["waiting_joined"], second["waiting_total"]) == (N, N, N, 0)
    else:
        overrides = sum(s["agent_decision"] != s["human_decision"] for s in native.values())
        assert (first["decisions_new"], first["reviews_new"]) == (N, overrides)  # inferred from override.run spans
        assert (second["reviews_new"], second["rows_joined"], second["rows_waiting"]) == (N, N, 0)
    sessions = {s.session_id: asdict(s) for s in Workspace(project).sessions}
    assert {s.pop("human_confidence") for s in sessions.values()} == {"high"}  # "Reviewer Confidence"
    # every review joined, with reviewer, reasoning, precedent and conditions
    assert sessions == {k: {f: v for f, v in s.items() if f != "human_confidence"} for k, s in native.items()}
    again = [cli_ingest(project, f) for f in files]  # nothing new, and no span-inferred review joins the history
    assert [(r["decisions_new"], r["reviews_new"], r["re_reviewed_sessions"]) for r in again] == [(0, 0, 0)] * 2
    assert sum(bool(s["precedent"]) for s in sessions.values()) > 0 and all(s["reviewer"] == "vera.fye" for s in sessions.values())


def test_otlp_json_in_every_container_is_read_whole(traced, tmp_path):
    spans, _ = traced
    write_otlp_json(tmp_path / "lines.json", spans)
    write_otlp_json(tmp_path / "pretty.json", spans, pretty=True)
    requests = [json.loads(line) for line in (tmp_path / "lines.json").read_text().splitlines()]
    (tmp_path / "array.json").write_text(json.dumps(requests, indent=1))
    (tmp_path / "lines.json.gz").write_bytes(gzip.compress((tmp_path / "lines.json").read_bytes()))
    counts = set()
    for name in ("lines.json", "pretty.json", "array.json", "lines.json.gz"):
        project = make_demo_project(tmp_path / name.replace(".", "-"), n=N)
        report = Workspace(project).ingest(str(tmp_path / name))
        assert report.accounted() and report.quarantined == 0 and report.rows_read == len(spans)
        counts.add((report.decisions_new, report.reviews_new))
    assert len(counts) == 1 and counts.pop()[0] == N


def test_otlp_hex_and_base64_ids_name_the_same_span(traced):
    import base64

    from improver.sources.otlp import hex_id

    span_id = traced[0][0].get_span_context().span_id
    assert hex_id(format(span_id, "016x"), 8) == hex_id(base64.b64encode(span_id.to_bytes(8, "big")).decode(), 8)


def test_a_file_of_no_known_layout_fails_naming_the_layouts_the_closest_and_the_mapping_that_reads_it(tmp_path):
    import yaml

    path = tmp_path / "mystery.jsonl"
    path.write_text(json.dumps({"event": "agent_step", "conversation": "c-1", "step_id": "s-9",
                                "request": {"amount": 3}, "answer": "approve"}) + "\n")
    project = make_demo_project(tmp_path / "p", n=10)
    with pytest.raises(TraceError) as error:
        Workspace(project).ingest(str(path))
    message = str(error.value)
    assert "Tried: native" in message and "arize" in message and "langfuse" in message and "Closest:" in message
    assert 'session: ["conversation"]' in message and 'span_id: ["step_id"]' in message
    suggested = yaml.safe_load(message[message.index("sources:\n"):])  # the lines to paste, as they are
    data = yaml.safe_load((project / "improver.yaml").read_text())
    (project / "improver.yaml").write_text(yaml.safe_dump(dict(data, **suggested)))
    report = Workspace(project).ingest(str(path))
    assert (report.decisions_new, report.rows_read, report.rows_joined) == (1, 1, 1)


def test_a_store_from_before_the_join_opens_with_its_reviews_and_an_annotation_then_wins(tmp_path):
    import sqlite3

    from improver.models import ReviewEvent
    from improver.store import TraceStore

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the reviews table and view as an earlier improver wrote them
        db.executescript("""
            CREATE TABLE reviews (seq INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, reviewer TEXT,
                decision TEXT NOT NULL, reasoning TEXT, precedent TEXT, conditions_json TEXT, ts TEXT,
                fingerprint TEXT NOT NULL UNIQUE);
            CREATE VIEW current_reviews AS SELECT * FROM (SELECT *, ROW_NUMBER() OVER (
                PARTITION BY session_id ORDER BY COALESCE(ts, '') DESC, seq DESC) AS rank FROM reviews) WHERE rank = 1;
            INSERT INTO reviews (session_id, reviewer, decision, ts, fingerprint) VALUES ('S1', 'ann', 'reject', '2026-01-01', 'f');
            """)
    with TraceStore(path) as store:
        store.ingest([ReviewEvent(session_id="S1", decision="approve", ts="2026-02-01", inferred=True)], "spans")
        assert store.db.execute("SELECT reviewer, decision FROM current_reviews").fetchall() == [("ann", "reject")]


def test_sources_show_prints_what_each_field_resolved_to_before_ingesting(traced, tmp_path, monkeypatch):
    spans, annotations = traced
    write_otlp_json(tmp_path / "otlp.json", spans)
    annotation_file = write_annotations("wire.jsonl", annotations, tmp_path, monkeypatch)
    runner = CliRunner()
    shown = json.loads(runner.invoke(app, ["sources", "show", str(tmp_path / "otlp.json"), "--json"]).output)
    assert shown["layout"] == "otlp"
    decision = shown["fields"]["decision"]
    assert decision["reasoning"]["path"] == "attributes.output.value.recommendation_reasoning"
    assert decision["decision"]["path"] == "attributes.output.value.recommendation"
    assert shown["fields"]["review"]["reviewer"]["value"] is None  # an override.run span alone names no reviewer
    shown = json.loads(runner.invoke(app, ["sources", "show", str(annotation_file), "--json"]).output)
    review = shown["fields"]["review"]
    assert (shown["layout"], shown["waiting"]) == ("arize", N)
    assert (review["decision"]["from"], review["reviewer"]["value"], review["reasoning"]["from"]) == (
        "annotation Reviewer Decision", "vera.fye", "parsed notes")
    table = runner.invoke(app, ["sources", "show", str(tmp_path / "otlp.json")]).output
    assert "read as otlp" in table and "not found" in table


def test_a_reviewers_confidence_is_stored_and_filled_into_a_review_stored_without_it(tmp_path):
    from improver.models import ReviewEvent
    from improver.store import TraceStore

    with TraceStore(tmp_path / "t.sqlite") as store:
        review = ReviewEvent(session_id="S1", reviewer="ann", decision="reject", ts="2026-01-01")
        store.ingest([review], "first")
        report = store.ingest([review.model_copy(update={"confidence": "medium"})], "again, with its confidence")
        assert (report.reviews_new, report.duplicates) == (0, 1)  # the same review, not a second one
        assert store.review_history("S1") == [{"reviewer": "ann", "decision": "reject", "reasoning": "", "precedent": None,
                                                "conditions": [], "ts": "2026-01-01", "confidence": "medium"}]
