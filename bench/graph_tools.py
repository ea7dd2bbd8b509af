"""The MCP graph tools at scale: first and later calls of graph_summary and get_session.

    python bench/graph_tools.py [--sessions 100000] [--project FOLDER]

Makes (or reuses, with --project) an ingested demo project, then through the real
in-memory MCP client times: graph_summary (the first call loads the reviewed sessions
and builds .improver/graph.sqlite), graph_summary again, get_session on several ids,
and graph_summary from a fresh server over the built graph. Done means: graph tools
< 0.5 s at 100k after the first call.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--project", type=Path, help="an ingested project to use instead of a new demo")
    args = parser.parse_args()
    import anyio
    from mcp import Client

    from improver.demo import make_demo_project
    from improver.mcp import build_server
    from improver.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="improver-graph-") as folder:
        project = args.project
        if project is None:
            project = make_demo_project(Path(folder) / "demo", n=args.sessions)
            Workspace(project).ingest(str(project / "traces.jsonl"))

        async def timed(client, name, arguments):
            started = time.perf_counter()
            result = await client.call_tool(name, arguments)
            assert not result.is_error, result.content[0].text
            return time.perf_counter() - started, result.structured_content

        async def run():
            rows = []
            async with Client(build_server(project)) as client:
                seconds, summary = await timed(client, "graph_summary", {})
                rows.append(("graph_summary, first call (loads sessions; graph built if missing)", seconds))
                rows.append(("graph_summary, second call", (await timed(client, "graph_summary", {}))[0]))
                ids = [f"PR-{i:0{len(str(summary['sessions']))}d}" for i in (1, 77, summary["sessions"] // 2)]
                for sid in ids:
                    rows.append((f"get_session {sid}", (await timed(client, "get_session", {"session_id": sid}))[0]))
            async with Client(build_server(project)) as client:
                rows.append(("fresh server: graph_summary, first call (graph on disk)", (await timed(client, "graph_summary", {}))[0]))
                rows.append(("fresh server: graph_summary, second call", (await timed(client, "graph_summary", {}))[0]))
            return summary, rows
        summary, rows = anyio.run(run)
        print(f"{summary['sessions']:,} sessions; graph {summary['nodes']}")
        for label, seconds in rows:
            print(f"{label:64} {seconds:8.3f} s")


if __name__ == "__main__":
    main()
