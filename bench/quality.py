"""Learning curves: agreement on fresh cases against the number of reviewed sessions.

    python bench/quality.py [--examples procurement,support] [--sizes 50,100,200,400,800,1600]
                            [--seeds 1,2,3,4,5] [--noise 0.05] [--fresh 2000] [--max-cycles 4]
                            [--plot docs/quality.png]

For each example, size N and seed it simulates N reviewed sessions, runs improver's
cycles as `improver cycle` does (cross-validated mining, refit, gate on out-of-fold
agreement) and scores the shipped config on ``--fresh`` new cases from the same
simulator under another seed, each reviewed as the reviewer reviews the agent's own
decision (with the same noise). That is the out-of-sample figure; improver's in-sample
and out-of-fold figures are printed beside it.

On the same N sessions and the same features (improver's candidate tests on the case
fields, plus the agent's own decision) it trains the standard learners and scores them
on the same fresh cases:
- ``tree``: a scikit-learn decision tree, depth and leaf size chosen by 5-fold CV;
- ``ripper``: RIPPER from wittgenstein, one class against the later ones in order of
  rising frequency (as RIPPER handles several classes), the most frequent the default;
- ``reviewer``: the reviewer's own rules (the simulator's knowledge written as learned
  rules), the ceiling.

Prints one row per example and N (means over seeds, improver's min–max) and saves the
curves as a plot. Needs the ``bench`` extra (``pip install -e '.[bench]'``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))
sys.path.insert(0, str(EXAMPLES / "support_triage"))

from improver.conditions import matches  # noqa: E402
from improver.cycle import run_cycles  # noqa: E402
from improver.features import Columns, build_tests, unpack  # noqa: E402
from improver.workspace import Workspace  # noqa: E402

LEARNERS = ("baseline", "improver", "tree", "ripper", "reviewer")


class Procurement:
    """The bundled procurement example: Vera's reviews of the LangGraph agent."""

    name = "procurement"

    def project(self, folder: Path, n: int, seed: int, noise: float) -> Path:
        from improver.demo import make_demo_project

        return make_demo_project(folder, n=n, seed=seed, inconsistency=noise)

    def fresh(self, count: int, seed: int, noise: float) -> tuple[list[dict], list[str], list[str]]:
        from procurement.purchase_requests import generate_requests
        from procurement.reviewer import load_knowledge, review

        cases = generate_requests(count, 10_000 + seed)
        base = self.decide(cases, None)
        knowledge, rng = load_knowledge(), random.Random(f"fresh/{seed}")
        humans = [review(c, {"decision": b}, knowledge, rng, 0.8, noise)["decision"] for c, b in zip(cases, base)]
        return cases, base, humans

    def decide(self, cases: list[dict], config_dir: Path | None) -> list[str]:
        from procurement.agent import DEFAULT_CONFIG_DIR, decide_batch

        return [d["decision"] for d in decide_batch(cases, config_dir or DEFAULT_CONFIG_DIR)]

    def reviewer(self, cases: list[dict], base: list[str]) -> list[str]:
        from procurement.reviewer import load_knowledge, oracle_rules

        rules = oracle_rules(load_knowledge())
        return [next((r["decision"] for r in rules if matches(r["when"], c)), b) for c, b in zip(cases, base)]


class Support:
    """The support-triage example: a command target and a lead with two unwritten rules."""

    name = "support"

    def project(self, folder: Path, n: int, seed: int, noise: float) -> Path:
        import yaml
        from lead import call, tickets

        folder.mkdir(parents=True)
        source = EXAMPLES / "support_triage"
        shutil.copytree(source / "config", folder / "config")
        shutil.copy(source / "agent.py", folder / "agent.py")
        spec = yaml.safe_load((source / "improver.yaml").read_text())
        spec["target"]["command"] = [sys.executable, "agent.py", "{config_dir}"]
        (folder / "improver.yaml").write_text(yaml.safe_dump(spec))
        rows = []
        for case, agent in zip(tickets(n, seed), self.decide(tickets(n, seed), None)):
            human, precedent, why = call(case, agent)
            rows.append({"type": "decision", "session_id": case["ticket"], "case": case, "decision": agent,
                         "confidence": "high", "reasoning": "by wait time", "cited": ["policy:wait-time"],
                         "ts": "2026-11-01T09:00:00Z"})
            rows.append({"type": "review", "session_id": case["ticket"], "reviewer": "lead", "decision": human,
                         "reasoning": why, "precedent": precedent, "conditions": [], "ts": "2026-11-01T10:00:00Z"})
        (folder / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return folder

    def fresh(self, count: int, seed: int, noise: float) -> tuple[list[dict], list[str], list[str]]:
        from lead import call, tickets

        cases = tickets(count, 10_000 + seed)
        base = self.decide(cases, None)
        return cases, base, [call(c, b)[0] for c, b in zip(cases, base)]

    def decide(self, cases: list[dict], config_dir: Path | None) -> list[str]:
        spec = importlib.util.spec_from_file_location("support_triage_agent", EXAMPLES / "support_triage" / "agent.py")
        agent = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(agent)
        folder = config_dir or EXAMPLES / "support_triage" / "config"
        return [agent.decide(c, folder)["decision"] for c in cases]

    def reviewer(self, cases: list[dict], base: list[str]) -> list[str]:
        from lead import call

        return [call(c, b)[0] for c, b in zip(cases, base)]


EXAMPLE_KINDS = {"procurement": Procurement, "support": Support}


def features(tests, cases: list[dict], agent: list[str], labels: list[str]) -> np.ndarray:
    """Rows × (one column per candidate test, one per agent decision label)."""
    columns = Columns(cases)
    tested = [columns.mask({t.field: {t.op: t.value}}) for t in tests]
    decided = [np.array([a == label for a in agent]) for label in labels]
    return np.stack(tested + decided, axis=1) if tested or decided else np.zeros((len(cases), 0), bool)


def tree_predictions(x: np.ndarray, y: list[str], fresh: np.ndarray) -> list[str]:
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.tree import DecisionTreeClassifier

    grid = {"max_depth": [2, 3, 4, 6, 8, None], "min_samples_leaf": [1, 2, 3, 5]}
    search = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=KFold(5, shuffle=True, random_state=0))
    search.fit(x, y)
    return list(search.predict(fresh))


def ripper_predictions(x: np.ndarray, y: list[str], fresh: np.ndarray) -> list[str]:
    """Ordered RIPPER: classes from rarest to commonest, each learned against the classes after it."""
    import pandas as pd
    import wittgenstein as lw

    def frame(matrix):
        return pd.DataFrame({f"f{i}": np.where(matrix[:, i], "y", "n") for i in range(matrix.shape[1])})

    labels = np.array(y, dtype=object)
    order = [label for label, _ in sorted(((lab, int((labels == lab).sum())) for lab in set(y)), key=lambda p: (p[1], p[0]))]
    default = order[-1]
    remaining = np.ones(len(y), dtype=bool)
    models = []
    for label in order[:-1]:
        if (labels[remaining] == label).sum() == 0:
            continue
        model = lw.RIPPER(random_state=0)
        model.fit(frame(x[remaining]), labels[remaining] == label, pos_class=True)
        models.append((label, model))
        remaining &= labels != label
    decided = np.full(len(fresh), None, dtype=object)
    table = frame(fresh)
    for label, model in models:
        hits = np.array(model.predict(table), dtype=bool) & (decided == None)  # noqa: E711
        decided[hits] = label
    decided[decided == None] = default  # noqa: E711
    return list(decided)


def agreement(decisions: list[str], humans: list[str]) -> float:
    return sum(d == h for d, h in zip(decisions, humans)) / len(humans)


def one_run(example, folder: Path, n: int, seed: int, noise: float, fresh_count: int, max_cycles: int,
            cv_max_sessions: int | None = None) -> dict:
    started = time.perf_counter()
    project = example.project(folder, n, seed, noise)
    if cv_max_sessions is not None:  # e.g. 0: the single validation split at every size, to measure what it costs
        with (project / "improver.yaml").open("a") as spec:
            spec.write(f"\ncv_max_sessions: {cv_max_sessions}\n")
    ws = Workspace(project)
    ws.ingest(str(project / "traces.jsonl"))
    state = run_cycles(ws, max_cycles=max_cycles)
    shipped = ws.experiments.get(state["parent"])
    seconds = time.perf_counter() - started
    cases, base, humans = example.fresh(fresh_count, seed, noise)
    row = {"baseline": agreement(base, humans), "improver": agreement(example.decide(cases, shipped.config_dir), humans),
           "reviewer": agreement(example.reviewer(cases, base), humans),
           "in-sample": shipped.results["train"]["agreement"], "cv": shipped.results["cv"]["agreement"],
           "seconds": seconds}
    sessions = ws.sessions
    tests = build_tests([s.case for s in sessions], min_count=ws.project.config.min_evidence)
    labels = sorted({s.agent_decision for s in sessions} | {s.human_decision for s in sessions})
    x = features(tests, [s.case for s in sessions], [s.agent_decision for s in sessions], labels)
    x_fresh = features(tests, cases, base, labels)
    y = [s.human_decision for s in sessions]
    row["tree"] = agreement(tree_predictions(x, y, x_fresh), humans)
    row["ripper"] = agreement(ripper_predictions(x, y, x_fresh), humans)
    return row


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.2), squeeze=False)
    styles = {"baseline": ("agent alone", "#999999", ":"), "improver": ("improver", "#1b7837", "-"),
              "tree": ("decision tree (sklearn)", "#2166ac", "--"), "ripper": ("RIPPER (wittgenstein)", "#b2182b", "--"),
              "reviewer": ("reviewer's own rules", "#000000", "-.")}
    for axis, (name, by_size) in zip(axes[0], curves.items()):
        sizes = sorted(by_size)
        for learner in LEARNERS:
            values = [by_size[n][learner] for n in sizes]
            label, colour, line = styles[learner]
            axis.plot(sizes, [statistics.mean(v) for v in values], line, color=colour, label=label, marker="o", ms=3)
            axis.fill_between(sizes, [min(v) for v in values], [max(v) for v in values], color=colour, alpha=0.12)
        axis.set_xscale("log")
        axis.minorticks_off()
        axis.set_xticks(sizes, [str(n) for n in sizes])
        axis.set_title(f"{name}: agreement on fresh cases")
        axis.set_xlabel("reviewed sessions (N)")
        axis.set_ylabel("agreement with the reviewer")
        axis.grid(alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def print_header(args) -> None:
    print(f"seeds={args.seeds} noise={args.noise} fresh={args.fresh} max_cycles={args.max_cycles}; "
          "agreement on fresh cases (mean over seeds); improver's in-sample and out-of-fold beside")
    print(f"{'example':<12} {'N':>5} {'agent':>6} {'improver (min-max)':>20} {'tree':>6} {'ripper':>6} {'reviewer':>8}"
          f"   {'in-sample':>9} {'out-of-fold':>11} {'time':>6}")


def print_row(name: str, n: int, by: dict[str, list[float]]) -> None:
    mean = {key: statistics.mean(v) for key, v in by.items()}
    spread = f"{mean['improver']:.1%} ({min(by['improver']):.0%}-{max(by['improver']):.0%})"
    print(f"{name:<12} {n:>5} {mean['baseline']:>6.1%} {spread:>20} {mean['tree']:>6.1%} {mean['ripper']:>6.1%} "
          f"{mean['reviewer']:>8.1%}   {mean['in-sample']:>9.1%} {mean['cv']:>11.1%} {mean['seconds']:>5.1f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", default="procurement,support")
    parser.add_argument("--sizes", default="50,100,200,400,800,1600")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--noise", type=float, default=0.05, help="how often the procurement reviewer flips a precedent")
    parser.add_argument("--fresh", type=int, default=2000, help="fresh cases each run is scored on")
    parser.add_argument("--max-cycles", type=int, default=4)
    parser.add_argument("--plot", default=str(ROOT / "docs" / "quality.png"))
    parser.add_argument("--cv-max-sessions", type=int, default=None, help="override improver.yaml (0: validation split)")
    parser.add_argument("--json", default="", help="also write the per-seed figures here")
    parser.add_argument("--combine", default="", help="plot and print earlier --json files (comma-separated) instead")
    args = parser.parse_args()
    if args.combine:
        curves: dict = {}
        for path in args.combine.split(","):
            for name, by_size in json.loads(Path(path).read_text()).items():
                curves.setdefault(name, {}).update({int(n): v for n, v in by_size.items()})
        print_header(args)
        for name, by_size in curves.items():
            for n in sorted(by_size):
                print_row(name, n, by_size[n])
        plot(curves, Path(args.plot))
        print(f"plot: {args.plot}")
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    print_header(args)
    curves: dict[str, dict[int, dict[str, list[float]]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.examples.split(","):
            example = EXAMPLE_KINDS[name]()
            for n in sizes:
                runs = [one_run(example, Path(scratch) / f"{name}-{n}-{seed}", n, seed, args.noise, args.fresh,
                                args.max_cycles, args.cv_max_sessions) for seed in seeds]
                by = {key: [r[key] for r in runs] for key in runs[0]}
                curves.setdefault(name, {})[n] = by
                print_row(name, n, by)
                if args.json:
                    Path(args.json).write_text(json.dumps(curves, indent=1))
    if args.plot:
        plot(curves, Path(args.plot))
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
