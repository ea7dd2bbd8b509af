"""Every supported layout joins all its sessions and accounts for every row; LangSmith and Langfuse
exports of the example's reviewed sessions reach, through ingest and a cycle, what native JSONL reaches."""
from __future__ import annotations

import gzip
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from improver.cycle import run_cycles
from improver.demo import make_demo_project
from improver.workspace import Workspace
from procurement.tracing import export_rows, trace_to_otlp, write_otlp_json, write_span_export
from vendor_exports import langfuse_export, langsmith_export

N = 30


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    folder = tmp_path_factory.mktemp("native")
    ws = Workspace(make_demo_project(folder / "p", n=N))
    ws.ingest(str(folder / "p" / "traces.jsonl"))
    return {s.session_id: asdict(s) for s in ws.sessions}


def arize_span_export(folder: Path) -> list[Path]:
    """An Arize span export: flattened ``attributes.*`` columns and no review spans; each review is the
    annotation columns of the agent's own span, notes in the wire form (parquet, as ``export_to_parquet``
    writes it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(export_rows(n=N, filler_spans=1))
    session_of = {r["context.span_id"]: r["attributes.session.id"] for r in rows if "context.span_id" in r}
    reviews = {}
    for row in rows:
        if "annotation_name" in row:
            reviews.setdefault(session_of[row["span_id"]], {})[row["annotation_name"]] = row
    spans = [r for r in rows if "annotation_name" not in r and r["name"] != "override.run"]
    for span in spans:
        if span["name"] == "process.run":
            review = reviews[span["attributes.session.id"]]
            span.update({"annotation.Reviewer Decision.label": review["Reviewer Decision"]["result.label"],
                         "annotation.Reviewer Decision.updated_by": review["Reviewer Decision"]["metadata"]["reviewer"],
                         "annotation.notes": [json.dumps({"text": review["note"]["result.explanation"],
                                                          "updated_by": "SDK", "updated_at": 1780000000000})]})
    pq.write_table(pa.Table.from_pylist(spans), folder / "arize_spans.parquet")
    return [folder / "arize_spans.parquet"]


def layout_files(layout: str, folder: Path) -> list[Path]:
    if layout == "native":
        return [folder / "p" / "traces.jsonl"]
    if layout == "native gzip":
        (folder / "traces.jsonl.gz").write_bytes(gzip.compress((folder / "p" / "traces.jsonl").read_bytes()))
        return [folder / "traces.jsonl.gz"]
    if layout == "openinference":
        write_span_export(folder / "spans.jsonl", n=N, filler_spans=1)
        return [folder / "spans.jsonl"]
    if layout == "otlp+arize":
        spans, annotations = trace_to_otlp(n=N)
        write_otlp_json(folder / "otlp.json", spans)
        (folder / "annotations.jsonl").write_text("".join(json.dumps(a) + "\n" for a in annotations))
        return [folder / "annotations.jsonl", folder / "otlp.json"]
    if layout == "arize spans":
        return arize_span_export(folder)
    if layout == "langsmith":
        return langsmith_export(folder, N)
    if layout == "langfuse":
        return langfuse_export(folder, N)
    if layout == "folder":
        (folder / "export").mkdir()
        return [langfuse_export(folder / "export", N)[0].parent]
    raise AssertionError(layout)


@pytest.mark.parametrize("layout", ["native", "native gzip", "openinference", "otlp+arize", "arize spans", "langsmith", "langfuse",
                                    "folder"])
def test_every_layout_joins_all_its_sessions_and_accounts_for_every_row(layout, native, tmp_path):
    project = make_demo_project(tmp_path / "p", n=N)
    ws = Workspace(project)
    for path in layout_files(layout, tmp_path):
        report = ws.ingest(str(path))
        assert report.accounted(), report.as_dict()
        assert report.rows_read > 0 and report.quarantined == 0
    assert report.waiting_total == 0
    sessions = {s.session_id: asdict(s) for s in ws.sessions}
    confidences = {s.pop("human_confidence") for s in sessions.values()}
    assert confidences == ({"high"} if "arize" in layout and layout != "arize spans" else {None})  # "Reviewer Confidence"
    assert sessions == {k: {f: v for f, v in s.items() if f != "human_confidence"} for k, s in native.items()}


def test_review_notes_parse_with_the_labels_a_team_configures(tmp_path):
    import yaml

    project = make_demo_project(tmp_path / "p", n=N)
    data = yaml.safe_load((project / "improver.yaml").read_text())
    data["sources"] = {"spans": {"note_labels": {"reasoning": ["Why"], "precedent": ["Rule"], "conditions": ["When"]}}}
    (project / "improver.yaml").write_text(yaml.safe_dump(data))
    spans, annotations = trace_to_otlp(n=3)
    write_otlp_json(tmp_path / "otlp.json", spans)
    for a in annotations:
        a["annotation.notes"] = "Why: too big\nRule: big-ticket\nWhen: amount > 10000; vendor new"
    import pandas as pd

    pd.DataFrame(annotations).to_csv(tmp_path / "a.csv", index=False)
    ws = Workspace(project)
    ws.ingest(str(tmp_path / "a.csv"))
    ws.ingest(str(tmp_path / "otlp.json"))
    assert {(s.human_reasoning, s.precedent, tuple(s.conditions)) for s in ws.sessions} == {
        ("too big", "big-ticket", ("amount > 10000", "vendor new"))}


def test_langsmith_and_langfuse_exports_reach_the_agreement_of_the_native_traces(tmp_path):
    agreement = {}
    for name in ("native", "langsmith", "langfuse"):
        folder = tmp_path / name
        folder.mkdir()
        project = make_demo_project(folder / "p", n=N)
        ws = Workspace(project)
        files = layout_files(name, folder)
        for path in reversed(files):  # reviews first: they wait for their runs and observations
            ws.ingest(str(path))
        state = run_cycles(ws, max_cycles=1)
        agreement[name] = [(row["train"], row["heldout"]) for row in state["history"]]
    assert agreement["langsmith"] == agreement["native"] and agreement["langfuse"] == agreement["native"]
    assert len(agreement["native"]) == 2  # the baseline and one cycle


def test_mcp_ingest_reports_the_waiting_annotations_and_their_join(tmp_path):
    import anyio
    from mcp import Client

    from improver.mcp import build_server

    project = make_demo_project(tmp_path / "p", n=N)
    observations, scores = langfuse_export(project, N)

    async def main():
        async with Client(build_server(project), mode="auto") as client:
            return [(await client.call_tool("ingest_traces", {"source": path.name})).structured_content
                    for path in (scores, observations)]
    first, second = anyio.run(main)
    trace_scores = sum(1 for i in range(N) if i % 3 != 1)  # the others name their session, so need no span
    assert (first["rows_waiting"], first["waiting_total"], len(first["waiting_for"])) == (trace_scores, trace_scores, 10)
    assert first["rows_ignored"] == {"scores from source EVAL (an evaluator), not a human": N}
    assert (second["waiting_joined"], second["waiting_total"], second["reviewed_sessions"]) == (trace_scores, 0, N)
