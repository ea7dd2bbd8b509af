"""The benchmark scripts still run end to end (tiny sizes; figures are printed, never asserted)."""
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize("script, args, expected", [
    ("quality.py", ["--examples", "support", "--sizes", "40", "--seeds", "1", "--fresh", "100", "--max-cycles", "1",
                    "--plot", ""], "support"),
    ("speed.py", ["--sessions", "300", "--repeat", "2"], "median ratio"),
    ("misses.py", ["--size", "40", "--seeds", "1", "--fresh", "100", "--max-cycles", "1"], "reviewer rule"),
    ("scale.py", ["--sizes", "300", "--stores", "networkx"], "whole cycle"),
    ("runtime.py", ["--sessions", "300", "--cases", "300"], "per call: load_overlay"),
    ("graph_tools.py", ["--sessions", "300"], "graph_summary, second call"),
    ("ingest.py", ["--mb", "1", "--sessions", "50"], "spans_per_s"),
    ("active.py", ["--domains", "moderation", "--seeds", "1", "--pool", "200", "--fresh", "100", "--until", "75",
                   "--queue-size", "0"], "the queue reaches it"),
])
def test_benchmark_script_runs_and_prints_its_table(script, args, expected):
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout
