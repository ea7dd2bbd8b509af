"""Active review: does picking what humans review (``improver queue``) beat random picks?

    python bench/active.py [--domains procurement,support,moderation] [--seeds 1,2,3,4,5]
                           [--strategies uniform,random,queue]
                           [--pool 3000] [--fresh 1000] [--start 50] [--step 25] [--until 400]
                           [--queue-size 100000] [--plot bench/active.png]

For each domain and seed: a pool of live traffic (agent decisions nobody reviewed), 50
random reviews to start, then batches of 25 picked by the queue (20% of each batch
its random share), or all at random, up to 400: ``random`` draws as the queue's random
share does (balanced over the decision, entities and a number: ``improver queue
--random-share 1``), ``uniform`` as a team reviewing with no queue would (a plain uniform
sample). Every strategy starts from the same 50 reviews (the queue's first batch). The
simulated reviewer answers each batch (her ``review_ids`` entry point), a cycle runs, and
the best experiment's config decides 1,000 fresh cases from the same simulator: agreement
with the reviewer there, mean over seeds, the curves side by side. Also printed, for the queue-picked reviews:
the agent's agreement estimated from them, weighted by the inverse pick probability
(batch by batch, and pooled), model-assisted (the rules the queue's reference had when it
drew each batch predict agreement on every decision, the batch's random picks correct their
error; see docs/queue.md) and unweighted, beside its agreement on the fresh cases (the bias the
weights remove) and on the whole pool (what they estimate: the two differ by chance);
``improver flag``'s precision on the procurement pool after the last batch; and the
time ``queue`` takes on ``--queue-size`` unreviewed decisions. No model tokens.
"""
from __future__ import annotations

import argparse
import importlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import yaml

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT / "examples", ROOT / "examples" / "support_triage", ROOT / "bench" / "domains"):
    sys.path.insert(0, str(folder))

from improver.cycle import run_cycles  # noqa: E402
from improver.experiments import Experiment  # noqa: E402
from improver.flag import flag  # noqa: E402
from improver.project import Project, write_project_file  # noqa: E402
from improver.queue import (Pending, Pick, Queue, balanced_sample, build_queue, model_assisted, next_batch,  # noqa: E402
                            pending_decisions, record, recorded_picks, spread_columns, spread_ranks)
from improver.scoring import cohens_kappa  # noqa: E402
from improver.workspace import Workspace  # noqa: E402


@dataclass
class Domain:
    name: str
    cases: Callable[[int, int], list[dict]]  # (n, seed) -> cases
    id_field: str
    decide_batch: Callable[[list[dict], Path], list[dict]]
    review_ids: Callable[[dict, list, int], list[dict]]  # (decision events by id, ids, seed) -> review events
    config: Path
    project: dict


def _one_by_one(decide):
    return lambda cases, config_dir: [decide(c, config_dir) for c in cases]


def domains() -> dict[str, Domain]:
    from lead import review_ids as lead_reviews
    from lead import tickets
    from moderation import decide as moderate
    from moderation import posts
    from moderation import review_ids as moderation_reviews
    from procurement.agent import decide_batch
    from procurement.purchase_requests import generate_requests
    from procurement.simulate import review_ids as vera_reviews

    support_agent = importlib.import_module("agent")  # examples/support_triage/agent.py
    procurement_yaml = yaml.safe_load((ROOT / "examples/procurement/improver.yaml").read_text())
    procurement_yaml["target"]["python_path"] = str(ROOT / "examples")
    return {
        "procurement": Domain("procurement", generate_requests, "request_id", decide_batch,
                              lambda d, ids, seed: vera_reviews(d, ids, seed), ROOT / "examples/procurement/config",
                              procurement_yaml),
        "support": Domain("support", lambda n, seed: tickets(n, seed), "ticket", _one_by_one(support_agent.decide),
                          lambda d, ids, seed: lead_reviews(d, ids), ROOT / "examples/support_triage/config",
                          {"target": {"callable": "agent:decide", "python_path": str(ROOT / "examples/support_triage"),
                                      "config": "config"},
                           "entity_fields": ["product", "plan"], "bands": {"waited_minutes": [30]}}),
        "moderation": Domain("moderation", posts, "post_id", _one_by_one(moderate),
                             lambda d, ids, seed: moderation_reviews(d, ids, seed), ROOT / "bench/domains/moderation_config",
                             {"target": {"callable": "moderation:decide", "python_path": str(ROOT / "bench/domains"),
                                         "config": "config"},
                              "entity_fields": ["category", "language"], "bands": {"reports": [2, 5]}}),
    }


def decision_events(domain: Domain, cases: list[dict], config_dir: Path) -> dict[str, dict]:
    results = domain.decide_batch(cases, config_dir)
    return {c[domain.id_field]: {"type": "decision", "session_id": c[domain.id_field], "case": c,
                                 "decision": r["decision"], "confidence": r.get("confidence"),
                                 "reasoning": r.get("reasoning", ""), "cited": r.get("cited", []),
                                 "ts": f"2026-11-{1 + i % 28:02d}T09:00:00Z"}
            for i, (c, r) in enumerate(zip(cases, results))}


def make_project(domain: Domain, folder: Path) -> Project:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copytree(domain.config, folder / "config")
    write_project_file(folder, domain.project)
    return Project.load(folder)


def ingest(ws: Workspace, folder: Path, name: str, events) -> None:
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    ws.ingest(str(path))


def at_step(project: Project, reviewed: int) -> Workspace:
    """A workspace whose experiments for this step live in their own folder (the reviewed set grew)."""
    config = project.config.model_copy(update={"experiments": f"experiments/n{reviewed:04d}"})
    return Workspace(Project(project.root, config))


def steps(domain: Domain, seed: int, strategy: str, args, scratch: Path) -> Iterator[tuple[int, Workspace, Experiment, dict]]:
    """One seed's run of a strategy: after each batch is picked, reviewed and a cycle run, the sessions
    reviewed so far, that step's workspace, its best experiment and the pool's decision events."""
    folder = scratch / f"{domain.name}-{seed}-{strategy}"
    project = make_project(domain, folder)
    pool = domain.cases(args.pool, seed)
    traffic = decision_events(domain, pool, project.base_config_dir)
    ws = Workspace(project)
    ingest(ws, folder, "traffic", traffic.values())
    share, n, first = 1.0, args.start, True
    while True:
        with ws.store() as store:
            if strategy == "uniform" and not first:  # the first 50 are every strategy's same start
                queue = uniform_picks(store.db, n, seed, next_batch(store.db))
            else:
                queue = build_queue(ws, n=n, random_share=share, seed=seed, batch=next_batch(store.db))
            record(store.db, queue)
        ingest(ws, folder, queue.batch, domain.review_ids(traffic, [p.session_id for p in queue.picks], seed))
        reviewed = len(ws.sessions)
        ws = at_step(project, reviewed)
        state = run_cycles(ws, max_cycles=args.max_cycles)
        yield reviewed, ws, ws.experiments.get(state["parent"]), traffic
        if reviewed >= args.until:
            return
        share, n, first = (args.random_share if strategy == "queue" else 1.0), args.step, False


def run_one(domain: Domain, seed: int, strategy: str, args, scratch: Path, fresh: list[dict], fresh_human: list[str]):
    rows = []
    for reviewed, ws, best, traffic in steps(domain, seed, strategy, args, scratch):
        decided = domain.decide_batch(fresh, best.config_dir)
        pairs = [(r["decision"], h) for r, h in zip(decided, fresh_human)]
        fresh_agreement = sum(a == h for a, h in pairs) / len(fresh)
        sampling = ws.score(ws.baseline()).get("sampling") or {}
        # each batch's model is the reference the queue had when it drew the batch (recorded with it);
        # none for the first batch (its plain weighted figure then)
        assisted = model_assisted(ws, ws.baseline()) or {}
        rows.append({"reviewed": reviewed, "fresh": fresh_agreement, "kappa": cohens_kappa(pairs),
                     "weighted": (sampling.get("weighted") or {}).get("agreement"),
                     "unweighted": (sampling.get("unweighted") or {}).get("agreement"),
                     "hajek": (sampling.get("hajek") or {}).get("agreement"), "model": assisted.get("agreement")})
    return rows, ws, traffic


def uniform_picks(db, n: int, seed: int, batch: str) -> Queue:
    """A plain uniform sample of ``n`` unreviewed decisions, recorded as random picks."""
    picked = set(recorded_picks(db))
    pending = [p for p in pending_decisions(db) if p.session_id not in picked]
    chosen = sorted(random.Random(f"uniform/{seed}/{batch}").sample(range(len(pending)), min(n, len(pending))))
    picks = [Pick(pending[i].session_id, pending[i].decision, "random", "uniform", 0.0, round(len(chosen) / len(pending), 8))
             for i in chosen]
    return Queue(batch, None, len(pending), picks, 1.0, [])


def flag_precision(domain: Domain, ws: Workspace, traffic: dict, seed: int) -> tuple[int, float | None]:
    _, flags = flag(ws)
    if not flags:
        return 0, None
    answers = {e["session_id"]: e["decision"] for e in domain.review_ids(traffic, [f.session_id for f in flags], seed)}
    return len(flags), sum(answers[f.session_id] == f.predicted for f in flags) / len(flags)


def queue_speed(domain: Domain, size: int, scratch: Path) -> float:
    folder = scratch / "queue-speed"
    project = make_project(domain, folder)
    traffic = decision_events(domain, domain.cases(size + 400, 99), project.base_config_dir)
    ws = Workspace(project)
    ingest(ws, folder, "traffic", traffic.values())
    ingest(ws, folder, "reviews", domain.review_ids(traffic, list(traffic)[:400], 99))
    run_cycles(ws, max_cycles=1)
    ws = Workspace(project)
    started = time.perf_counter()
    build_queue(ws, n=50)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", default="procurement,support,moderation")
    parser.add_argument("--seeds", default="1,2,3,4,5", help="empty: run no curve (e.g. only the queue timing)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help="run only these (random picks do not depend on the queue: run them apart and --load them)")
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--fresh", type=int, default=1000)
    parser.add_argument("--start", type=int, default=50)
    parser.add_argument("--step", type=int, default=25)
    parser.add_argument("--until", type=int, default=400)
    parser.add_argument("--random-share", type=float, default=0.2)
    parser.add_argument("--max-cycles", type=int, default=1, help="cycles after each batch (the issue: a cycle)")
    parser.add_argument("--queue-size", type=int, default=100_000, help="0 skips the queue timing")
    parser.add_argument("--plot", default="", help="save the curves here (PNG; needs matplotlib)")
    parser.add_argument("--save", default="", help="also write the per-seed figures here (JSON), to --load later")
    parser.add_argument("--load", nargs="*", default=[], help="print and plot saved figures (seeds run apart) instead")
    args = parser.parse_args()
    if args.load:
        found: dict = {}
        for path in args.load:
            for name, part in json.loads(Path(path).read_text()).items():
                merge(found.setdefault(name, empty()), part)
        figures = found
    else:
        figures = run_all(args)
        if args.save:
            Path(args.save).write_text(json.dumps(figures))
    for name, part in figures.items():
        if part["curves"]["queue"] and any(part["curves"][s] for s in BASELINES):
            report(name, part)
        else:  # one strategy run apart: nothing to set side by side yet
            print(f"{name}: saved; --load it with the other strategy's figures to compare")
    if args.plot and figures:
        plot({name: part["curves"] for name, part in figures.items()}, args.plot)


BASELINES = ("uniform", "random")  # what the queue is measured against
STRATEGIES = (*BASELINES, "queue")
LABELS = {"uniform": "uniform random picks", "random": "balanced random picks", "queue": "improver queue"}


def empty() -> dict:
    return {"curves": {s: {} for s in STRATEGIES}, "kappas": {s: {} for s in STRATEGIES},
            "estimates": {}, "flagged": [], "draws": []}


def merge(into: dict, part: dict) -> None:
    for kind in ("curves", "kappas"):
        for strategy, points in part[kind].items():
            for n, values in points.items():
                into[kind][strategy].setdefault(n, []).extend(values)
    for n, values in part["estimates"].items():
        into["estimates"].setdefault(n, []).extend(values)
    into["flagged"] += part["flagged"]
    into["draws"] += part.get("draws", [])  # saved by older runs without it


FIRST_BATCH_DRAWS = 500


def first_batch_luck(agree: list[int], ranks: list, start: int, seed: int) -> tuple[float, float, float]:
    """What luck does to the first batch's estimate (its plain random share, no model yet): over
    ``FIRST_BATCH_DRAWS`` draws of ``start`` sessions from the pool as the queue draws them (balanced
    over ``ranks``), the mean and the SD of their agreement minus the pool's, in points, and the SD
    of plain uniform draws beside them. A mean near 0 is an unbiased estimate; the SD is the chance
    error one seed's draw carries (a mean over n seeds: SD / sqrt(n))."""
    truth = sum(agree) / len(agree)

    def errors(draw) -> list[float]:
        return [(sum(agree[i] for i in draw(random.Random(f"luck/{seed}/{k}"))) / start - truth) * 100
                for k in range(FIRST_BATCH_DRAWS)]
    balanced = errors(lambda rng: balanced_sample(ranks, start, rng))
    uniform = errors(lambda rng: rng.sample(range(len(agree)), start))
    return statistics.mean(balanced), statistics.pstdev(balanced), statistics.pstdev(uniform)


def run_all(args) -> dict:
    """Per domain: fresh-case agreement and kappa per strategy and step, estimates, flag precision (per seed)."""
    seeds = [int(s) for s in args.seeds.split(",") if s]
    every = domains()
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for name in args.domains.split(",") if seeds else []:
            domain, part = every[name], figures.setdefault(name, empty())
            for seed in seeds:
                fresh = domain.cases(args.fresh, seed + 10_000)
                base = decision_events(domain, fresh, domain.config)
                answers = {e["session_id"]: e["decision"] for e in domain.review_ids(base, list(base), seed + 10_000)}
                fresh_human = [answers[c[domain.id_field]] for c in fresh]
                base_fresh = sum(base[c[domain.id_field]]["decision"] == h for c, h in zip(fresh, fresh_human)) / len(fresh)
                for strategy in args.strategies.split(","):
                    started = time.perf_counter()
                    rows, ws, traffic = run_one(domain, seed, strategy, args, scratch, fresh, fresh_human)
                    # what the estimates estimate: the agent's agreement on the whole pool (the fresh cases differ by chance)
                    pool_answers = domain.review_ids(traffic, list(traffic), seed) if strategy == "queue" else []
                    agree = [int(e["decision"] == traffic[e["session_id"]]["decision"]) for e in pool_answers]
                    base_pool = sum(agree) / max(len(traffic), 1)
                    if agree and len(agree) >= args.start:
                        pending = [Pending(e["session_id"], traffic[e["session_id"]]["case"], traffic[e["session_id"]]["decision"],
                                           None) for e in pool_answers]
                        ranks = spread_ranks(spread_columns(pending, domain.project.get("entity_fields", []),
                                                            list(domain.project.get("bands", {}))[:1]))
                        part["draws"].append(first_batch_luck(agree, ranks, args.start, seed))
                    for row in rows:
                        n = str(row["reviewed"])
                        part["curves"][strategy].setdefault(n, []).append(row["fresh"])
                        part["kappas"][strategy].setdefault(n, []).append(row["kappa"])
                        if strategy == "queue":
                            part["estimates"].setdefault(n, []).append((base_fresh, row["weighted"], row["unweighted"], row["hajek"],
                                                                            row["model"], base_pool))
                    if strategy == "queue" and name == "procurement":
                        part["flagged"].append(flag_precision(domain, ws, traffic, seed))
                    print(f"  {name} seed {seed} {strategy}: {len(rows)} steps in {time.perf_counter() - started:.0f} s",
                          file=sys.stderr, flush=True)
        if args.queue_size:
            seconds = queue_speed(every["procurement"], args.queue_size, scratch)
            print(f"\nimprover queue on {args.queue_size:,} unreviewed decisions: {seconds:.1f} s")
    return figures


def report(name: str, part: dict) -> None:
    curve, kappas, estimates, flagged = part["curves"], part["kappas"], part["estimates"], part["flagged"]
    mean = {s: {int(n): statistics.mean(v) for n, v in c.items()} for s, c in curve.items()}
    kappa = {s: {int(n): statistics.mean(v) for n, v in c.items()} for s, c in kappas.items()}
    estimates = {int(n): v for n, v in estimates.items()}
    print(f"\n{name}: agreement (and Cohen's kappa) on fresh cases after each batch, mean over seeds; the agent's "
          "own agreement on fresh cases beside its estimates from the queue-picked reviews")
    baselines = [b for b in BASELINES if mean.get(b)]
    print(f"{'reviews':>7} " + "".join(f"{b:>8} " for b in baselines) + f"{'queue':>7} "
          + "".join(f"{'q - ' + b[0]:>6} " for b in baselines) + "".join(f"{'κ ' + b:>10} " for b in baselines)
          + f"{'κ queue':>7}   {'agent fresh':>11} {'HT est':>7} {'HT - f':>6} {'Hájek':>6} {'Há - f':>6} {'model-a.':>8} "
          f"{'MA - f':>6} {'unweighted':>10} {'agent pool':>10}")
    steps = {}
    for n in sorted(set(mean["queue"]).intersection(*(mean[b] for b in baselines))):  # steps every curve reached
        q = mean["queue"][n]
        fresh, weighted, unweighted, hajek, assisted, pool = (column_mean(estimates[n], i) for i in range(6))
        steps[n] = (weighted - fresh, hajek - fresh, assisted - fresh)
        print(f"{n:>7} " + "".join(f"{mean[b][n]:>8.1%} " for b in baselines) + f"{q:>7.1%} "
              + "".join(f"{(q - mean[b][n]) * 100:>+6.1f} " for b in baselines)
              + "".join(f"{kappa[b][n]:>10.2f} " for b in baselines) + f"{kappa['queue'][n]:>7.2f}   "
              f"{fresh:>11.1%} {weighted:>7.1%} {(weighted - fresh) * 100:>+6.1f} {hajek:>6.1%} {(hajek - fresh) * 100:>+6.1f} "
              f"{assisted:>8.1%} {(assisted - fresh) * 100:>+6.1f} {unweighted:>10.1%} {pool:>10.1%}")
    for b in baselines:
        target = mean[b][max(mean[b])]
        reached = next((n for n in sorted(mean["queue"]) if mean["queue"][n] >= target), None)
        worst = min((mean["queue"][n] - mean[b][n]) * 100 for n in mean[b] if n in mean["queue"])
        print(f"{b} picks reach {target:.2%} with {max(mean[b])} reviews; the queue reaches it with "
              f"{reached if reached else 'more than ' + str(max(mean['queue']))} reviews; "
              f"worst step queue - {b} {worst:+.1f} pts")
    print("estimates of the agent's fresh agreement, mean over seeds, worst step: "
          + ", ".join(f"{label} off by {max(abs(step[i]) for step in steps.values()) * 100:.1f} pts"
                      for i, label in enumerate(("Horvitz-Thompson (batch by batch)", "Hájek (pooled)",
                                                 "model-assisted (difference, each batch's model the queue's reference when it drew the batch)"))))
    for i, label in ((1, "HT"), (4, "model-assisted")):
        errors = [abs(row[i] - row[0]) * 100 for n in estimates for row in estimates[n] if len(row) > i and row[i] is not None]
        if errors:
            print(f"per seed and step the {label} estimate is off by {statistics.mean(errors):.1f} pts on average, "
                  f"max {max(errors):.1f}")
    first = [(row[4] - row[0]) * 100 for row in estimates[min(estimates)] if len(row) > 4 and row[4] is not None]
    if len(first) > 1:  # no model yet: the first batch's estimate is its random reviews' mean, as luck draws them
        print(f"at {min(estimates)} reviews (all random) the estimate's mean over {len(first)} seeds is off by "
              f"{statistics.mean(first):+.1f} pts, with a standard error of {statistics.stdev(first) / len(first) ** 0.5:.1f} pts")
    draws = part.get("draws") or []
    if draws:
        sd = statistics.mean(d[1] for d in draws)
        print(f"the first batch's luck: over {FIRST_BATCH_DRAWS} balanced draws of its {min(estimates)} random reviews per seed, "
              f"its estimate is off by {statistics.mean(d[0] for d in draws):+.2f} pts on average (unbiased) with an SD of "
              f"{sd:.1f} pts (uniform draws: {statistics.mean(d[2] for d in draws):.1f} pts); a mean over "
              f"{len(draws)} seeds is off by chance by {sd / len(draws) ** 0.5:.1f} pts (one SD)")
    pooled = [n for n in estimates if all(len(row) > 5 for row in estimates[n])]
    if pooled:  # against what they estimate: the agent's agreement on the pool the reviews were picked from
        worst = {label: max(abs(column_mean(estimates[n], i) - column_mean(estimates[n], 5)) * 100 for n in pooled)
                 for i, label in ((1, "HT"), (4, "model-assisted"))}
        print("against the agent's agreement on the pool itself (mean over seeds), worst step: "
              + ", ".join(f"{label} off by {value:.1f} pts" for label, value in worst.items())
              + f"; the pool and the fresh cases differ by {max(abs(column_mean(estimates[n], 5) - column_mean(estimates[n], 0)) for n in pooled) * 100:.1f} pts")
    if flagged:
        counts = [n for n, _ in flagged]
        precisions = [p for _, p in flagged if p is not None]
        print(f"improver flag after the last batch: {statistics.mean(counts):.0f} predicted overrides per seed, "
              f"precision against the reviewer {statistics.mean(precisions):.1%}" if precisions else "no flags")


def column_mean(rows: list, i: int) -> float:
    """The mean of the i-th figure over seeds (those that have it; NaN when none, e.g. older saves)."""
    values = [row[i] for row in rows if len(row) > i and row[i] is not None]
    return statistics.mean(values) if values else float("nan")


def plot(curves: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install matplotlib)")
        return
    figure, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    for axis, (name, curve) in zip(axes[0], curves.items()):
        for strategy, points in curve.items():
            xs = sorted(points, key=int)
            axis.plot([int(x) for x in xs], [statistics.mean(points[x]) for x in xs], marker="o",
                      label=LABELS.get(strategy, strategy))
        axis.set_title(name)
        axis.set_xlabel("reviewed sessions")
        axis.set_ylabel("agreement on fresh cases")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"plot saved to {path}")


if __name__ == "__main__":
    main()
