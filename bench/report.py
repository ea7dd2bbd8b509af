"""The HTML report of a large project: its size, the time to write it and to open it in Chromium.

    python bench/report.py                   # 100k reviewed sessions (the target: < 5 MB, opens < 2 s)
    python bench/report.py --sessions 10000
    python bench/report.py --keep /tmp/big      # keep the project there; run again to reuse it

Makes the procurement example with that many reviewed sessions, runs improvement cycles,
writes the report of the best experiment with `improver.report.write_report`, then
opens it from disk in headless Chromium (Debian's package, over the DevTools protocol)
and prints the page's own load time (navigation start to load event end) and the time
from the navigate command to the load event. Measured, not asserted.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "examples")]

from chromium import chromium, open_page  # noqa: E402
from improver.cycle import run_cycles  # noqa: E402
from improver.demo import make_demo_project  # noqa: E402
from improver.report import default_experiment, write_report  # noqa: E402
from improver.workspace import Workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--max-cycles", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="Make the project in this folder and keep it (reused when it exists).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="improver-bench-report-") as folder:
        started = time.perf_counter()
        project = args.keep.resolve() / "p" if args.keep else Path(folder) / "p"
        if (project / "experiments").exists():  # kept from an earlier run: report its best experiment again
            ws = Workspace(project)
            best = default_experiment(ws).id
            print(f"reusing {project}: {len(ws.sessions)} reviewed sessions, best {best}")
        else:
            make_demo_project(project, n=args.sessions)
            ws = Workspace(project)
            ws.ingest(str(project / "traces.jsonl"))
            state = run_cycles(ws, max_cycles=args.max_cycles)
            best = state["parent"]
            print(f"{len(ws.sessions)} reviewed sessions, {len(state['history']) - 1} cycles, best {best}: "
                  f"{time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        path = write_report(Workspace(project), best, Path(folder) / "report.html")
        written = time.perf_counter() - started
        size = path.stat().st_size
        print(f"report: {size / 1e6:.2f} MB (target < 5 MB), written in {written:.1f} s")
        if chromium() is None:
            print("no chromium on PATH: open time not measured (apt-get install -y chromium)")
            return
        for attempt in (1, 2):
            page = open_page(path, "document.querySelectorAll('figure.chart svg').length", screenshot=False)
            print(f"open {attempt} in headless Chromium: load event at {page.load_ms / 1000:.2f} s as the page measured it, "
                  f"{page.wall_ms / 1000:.2f} s from navigate to load (target < 2 s); {page.value} charts, "
                  f"{len(page.requests) - 1} network requests, {len(page.exceptions)} errors")


if __name__ == "__main__":
    main()
