"""Redaction quality: planted PII and secrets found in artifacts (target 0), look-alikes masked (target ≤ 1%).

Builds the generated corpus project of tests/pii_corpus.py (planted values of every kind in
every field and trace format, plus look-alikes such as order ids, versions, amounts and dates),
runs ingest → one cycle → graph export, and greps every file improver wrote (the trace store,
experiments, exports) for each planted value. Look-alikes are looked up in the stored cases.

    python bench/redaction.py [--sessions 72] [--seed 11]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=72)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    from pii_corpus import corpus_project

    from improver.cycle import run_cycles
    from improver.graphs.export import write_cypher, write_graphml
    from improver.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="improver-redaction-") as tmp:
        project, plants, similar, inputs = corpus_project(Path(tmp) / "p", n=args.sessions, seed=args.seed)
        started = time.perf_counter()
        ws = Workspace(project)
        for path in inputs:
            ws.ingest(str(path))
        ingest_seconds = time.perf_counter() - started
        run_cycles(ws, max_cycles=1)
        graph = ws.graph()
        write_graphml(graph, project / "graph.graphml")
        write_cypher(graph, project / "graph.cypher")
        skip = {*inputs, project / "improver.yaml", project / ".improver" / "redaction.key"}
        texts = {str(p.relative_to(project)): p.read_bytes().decode("utf-8", "replace")
                 for p in project.rglob("*") if p.is_file() and p not in skip}
        found = [p for p in plants if any(n in text for text in texts.values() for n in p.needles)]
        stored = json.dumps([s.case for s in ws.sessions])
        masked = [v for v in similar if str(v) not in stored]
    print(f"corpus: {len(plants)} planted values ({', '.join(f'{k} {n}' for k, n in sorted(Counter(p.kind for p in plants).items()))}) "
          f"in {len({p.field for p in plants})} fields and {len({p.format for p in plants})} formats; {len(similar)} look-alikes")
    print(f"artifacts scanned: {len(texts)} files; ingest took {ingest_seconds:.2f} s")
    print(f"planted values found in artifacts: {len(found)} (target 0)" + "".join(f"\n  {p}" for p in found))
    print(f"look-alikes masked: {len(masked)}/{len(similar)} = {len(masked) / len(similar):.1%} (target <= 1%)"
          + "".join(f"\n  {v!r}" for v in masked))
    return 0 if not found and len(masked) <= len(similar) / 100 else 1


if __name__ == "__main__":
    sys.exit(main())
