"""`improver report`: the demo's HTML report, opened from disk in headless Chromium as a person would.

Needs Debian's ``chromium`` (scripts/setup installs it when run as root); skipped only
when no Chromium is installed.
"""
from __future__ import annotations

import importlib
import json
import shutil
import sys

import pytest
from typer.testing import CliRunner

from chromium import chromium, open_page
from improver.cli import app
from improver.cycle import run_cycles
from improver.errors import MissingExtraError
from improver.demo import make_demo_project
from improver.report import render, splits_of
from improver.workspace import Workspace

PAGE_FACTS = """(() => {
  const drawn = svg => svg.getBoundingClientRect().width > 100 && svg.querySelectorAll('path, use').length > 10;
  const charts = [...document.querySelectorAll('figure.chart')];
  return {
    curves: charts.filter(f => f.dataset.chart === 'curve' && drawn(f.querySelector('svg'))).length,
    graphs: charts.filter(f => f.dataset.chart === 'graph' && drawn(f.querySelector('svg'))).length,
    cards: document.querySelectorAll('article.card').length,
    quotes: document.querySelectorAll('article.card blockquote').length,
    confusion: document.querySelectorAll('table.confusion td').length,
    text: document.body.innerText,
  };
})()"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo project after its cycles (the same as `improver demo`)."""
    folder = make_demo_project(tmp_path_factory.mktemp("report") / "demo")
    ws = Workspace(folder)
    ws.ingest(str(folder / "traces.jsonl"))
    state = run_cycles(ws)
    return folder, state["parent"]


def test_demo_report_opens_from_disk_with_curve_cards_and_graph_pictures(demo, tmp_path):
    if chromium() is None:
        pytest.skip("no chromium installed (apt-get install -y chromium; scripts/setup does it as root)")
    folder, best = demo
    result = CliRunner().invoke(app, ["report", "--project", str(folder), "--out", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    manifest_proposals = len(Workspace(folder).experiments.get(best).manifest.proposals)

    page = open_page(tmp_path / "report.html", PAGE_FACTS)
    (tmp_path / "report.png").write_bytes(page.screenshot)

    facts = page.value
    assert facts["curves"] == 1
    assert facts["cards"] >= manifest_proposals > 0 and facts["graphs"] == facts["cards"]
    assert facts["quotes"] >= facts["cards"] and facts["confusion"] >= 9
    assert best in facts["text"] and "cross-validated agreement" in facts["text"]
    assert "measured effect" in facts["text"] and "out-of-fold" in facts["text"] and "leave-one-out in-sample" in facts["text"]
    assert page.exceptions == [] and [m for m in page.console if m["level"] in ("error", "warning")] == []
    assert page.requests == [(tmp_path / "report.html").resolve().as_uri()]  # the file itself, nothing else
    assert page.screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(page.screenshot) > 50_000


def test_report_shows_every_split_results_carry_including_cross_validated(demo, tmp_path):
    folder, best = demo
    shutil.copytree(folder, tmp_path / "copy")
    ws = Workspace(tmp_path / "copy")
    experiment = ws.experiments.get(best)
    results = json.loads((experiment.path / "results.json").read_text())
    assert splits_of(results) == ["cv", "train", "all"]  # the demo has no locked test split
    results["cv"] = dict(results["cv"], agreement=0.7777)
    results["per_proposal"] = {pid: {**effect, "folds": [1, 0, 2]} for pid, effect in results["per_proposal"].items()}
    (experiment.path / "results.json").unlink()
    experiment.write_results(results)

    assert splits_of(results) == ["cv", "train", "all"]
    page = render(ws, best)
    assert "77.8% cross-validated agreement" in page and "per fold +1, +0, +2" in page


def test_report_without_the_report_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    monkeypatch.delitem(sys.modules, "improver.report.charts", raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install 'agent-improver\[report\]'"):
        importlib.import_module("improver.report.charts")
