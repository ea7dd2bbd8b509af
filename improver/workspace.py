"""The loop's stages over one project: ingest, baseline, mine, propose, run, score, gate.

``Workspace`` is what the CLI, the MCP server and the LangGraph cycle call; it holds
the project, its trace store and experiments, and caches the reviewed sessions for
the life of one command. Every stage that writes is safe to run again: experiments
are looked up before they are made, and decisions and results are written once.
"""
from __future__ import annotations

import gc
import hashlib
import json
import tempfile
from collections import Counter
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from improver import __version__, crossval
from improver.crossval import CrossValidation, FoldRun
from improver.errors import ExperimentError, ImproverError, RunFailedError
from improver.experiments import DecisionsFile, Experiment, ExperimentStore, Manifest, Proposal, now, read_tree, tree_hash
from improver.features import Columns
from improver.leakscan import LeakScan
from improver.lock import ProjectLock
from improver.mining import MiningResult, mine
from improver.models import ReviewedSession
from improver.notices import notices
from improver.project import Project
from improver.propose import build_proposals, guidance_from, render_config, report
from improver.queue import model_assisted, recorded_picks, reference_experiment, sampled_agreement
from improver.redact import Redactor, screened
from improver.runners import ERROR, ErrorBudget, run_many, runner_for
from improver.runtime import RULES_FILE, load_overlay, parse_rules
from improver.scoring import score, split_of
from improver.sources import native_worker, open_source
from improver.store import IngestReport, TraceStore

ProgressFn = Callable[[str, int, int], None]  # (label, done, total)
FREEZE_FROM = 10_000  # reviewed sessions from which they are kept out of the garbage collector's passes


class Workspace:
    def __init__(self, project: Project | str | Path = ".", progress: ProgressFn | None = None,
                 wait: float = 0, notice: Callable[[str], None] | None = None, rerun: bool = False):
        self.project = project if isinstance(project, Project) else Project.load(project)
        self.leak_scan = LeakScan.from_project(self.project)
        self.experiments = ExperimentStore(self.project.experiments_dir, self.leak_scan)
        self.progress = progress
        self.writing = ProjectLock(self.project.data_dir, wait, notice)  # one writer per project
        self.rerun = rerun  # make a new baseline even if one with the same key exists
        self.rerun_answers = rerun  # answers from the agent, not from the decision cache
        self._decisions: dict[Path, dict[str, dict]] = {}  # decisions files are written once, so read once
        self._graph = None
        self._fold_decisions: dict[tuple[Path, int], dict[str, dict]] = {}

    # --- traces --------------------------------------------------------------------
    def store(self) -> TraceStore:
        return TraceStore(self.project.store_path)

    def ingest(self, spec: str) -> IngestReport:
        """Store a source's events, PII redacted first; an incremental source moves its cursor after."""
        with self.writing("improver ingest"):
            return self._ingest(spec)

    def _ingest(self, spec: str) -> IngestReport:
        source = open_source(spec, self.project)
        redactor = Redactor.from_project(self.project)
        with self.store() as store:
            if hasattr(source, "resume"):
                source.resume(store.cursor(source.name))
            if hasattr(source, "join"):
                source.join(store)
            if native_worker.wanted(source):  # a large native file: read in a second process while this one stores
                report = store.ingest_rows(native_worker.rows(source, self.project.root, redactor), source.name)
            else:
                report = store.ingest(screened(source, redactor), source.name)
            self._account(source, store, report, redactor)
            if getattr(source, "position", None):
                store.set_cursor(source.name, source.position)
        report.redacted.update(redactor.counts if redactor else {})
        report.cleaned.update(getattr(source, "cleaned", {}))
        for cached in ("sessions", "columns", "reviewed_fingerprint", "mining_key", "fold_plan", "train_indices"):
            self.__dict__.pop(cached, None)
        self._decisions.clear()
        self._fold_decisions.clear()
        return report

    @staticmethod
    def _account(source, store: TraceStore, report: IngestReport, redactor) -> None:
        """Keep the spans a later annotation may need and the annotations still waiting for a span (PII
        masked), and account for every row the source read."""
        assembler = getattr(source, "assembler", None)
        if assembler is not None:
            waiting = [(s, src, line, redactor.value(r) if redactor else r) for s, src, line, r in assembler.waiting]
            seen = {span: redactor.text(session, True) for span, session in assembler.seen.items()} \
                if redactor else assembler.seen  # masked as the events' session ids are
            store.add_spans(seen, waiting)
            report.rows_read, report.rows_joined = assembler.tally["read"], assembler.tally["joined"]
            report.rows_waiting, report.waiting_joined = assembler.tally["waiting"], assembler.tally["joined_waiting"]
            report.rows_ignored.update(assembler.ignored)
        else:  # native events: one a row
            report.rows_read, report.rows_joined = getattr(source, "rows_read", 0), report.events
        report.waiting_total, report.waiting_for = store.waiting_summary()

    @cached_property
    def sessions(self) -> list[ReviewedSession]:
        """Every reviewed session, read once. Read with the cyclic garbage collector paused, and
        kept out of its later passes when many (they live as long as the workspace and hold no
        cycles), so a large set is not rescanned on every collection: at 100k sessions this
        takes about a third off reading them and off each rerun of the target in this process."""
        stored = hashlib.sha256()
        with collector_paused():
            with self.store() as store:
                sessions = list(store.reviewed_sessions(stored))
        self._stored_digest = stored.hexdigest()  # of the rows as stored, for ``mining_key``
        if len(sessions) >= FREEZE_FROM:
            gc.freeze()
        return sessions

    def require_sessions(self) -> list[ReviewedSession]:
        if not self.sessions:
            with self.store() as store:
                waiting = store.db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
            raise ImproverError("no reviewed sessions yet: ingest traces that hold both agent decisions and "
                                "human reviews (`improver ingest traces.jsonl`)" + (
                                    f"; {waiting} agent decisions are waiting for review: `improver queue` picks "
                                    "which ones humans should review first" if waiting else ""))
        return self.sessions

    def graph(self):
        """The project's graph store, holding every reviewed session (loaded when it lags the traces).

        Opened once per workspace and kept (the MCP server asks for it on every graph tool call)."""
        from improver.graphs import open_graph_store

        config = self.project.config
        if self._graph is None:
            self._graph = open_graph_store(config.graph_store, self.project)
        if self._graph.summary()["nodes"].get("Session", 0) != len(self.sessions):
            self._graph.load(self.sessions, config.entity_fields, config.bands)
        return self._graph

    @cached_property
    def reviewed_fingerprint(self) -> str:
        """A hash of the reviewed sessions (ids, agent and human decisions): changes when reviews arrive."""
        digest = hashlib.sha256()
        for s in self.sessions:
            digest.update(f"{s.session_id}\t{s.agent_decision}\t{s.human_decision}\n".encode())
        return digest.hexdigest()[:16]

    @cached_property
    def mining_key(self) -> str:
        """A hash of all a cycle's mining reads besides its parent experiment: every reviewed session as
        stored (case, decisions, notes, tags), the project's settings, the target and improver's version.
        A cycle experiment mined from the same parent under the same key is what mining again would make."""
        self.require_sessions()  # read with a digest of their stored rows
        inputs = [__version__, self.project.config.model_dump(mode="json"), self.target_key, self._stored_digest]
        return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def mined_before(self, parent: Experiment, cycle: int) -> Experiment | None:
        """The cycle experiment an earlier run mined from ``parent`` under today's ``mining_key``, if any."""
        return self.find(parent=parent.id, kind="cycle", cycle=cycle, mined=self.mining_key)

    @cached_property
    def columns(self) -> Columns:
        return Columns([s.case for s in self.sessions])

    def split(self, session_id: str) -> str:
        return split_of(session_id, self.project.config.holdout)

    @cached_property
    def train_indices(self) -> np.ndarray:
        """Indices into ``sessions`` of the training split (every session but the locked test split)."""
        sessions = self.require_sessions()
        if self.project.config.holdout <= 0:  # no test split
            return np.arange(len(sessions))
        return np.array([i for i, s in enumerate(sessions) if self.split(s.session_id) == "train"], dtype=int)

    # --- experiments ---------------------------------------------------------------
    def find(self, **fields) -> Experiment | None:
        """The newest experiment whose manifest has these values (``run`` is the cycle run that made it,
        ``reviewed`` the fingerprint of the reviewed sessions a baseline was run on, ``mined`` the
        ``mining_key`` a cycle experiment was mined under)."""
        for experiment in reversed(self.experiments.all()):
            manifest = experiment.manifest
            if all((manifest.mining.get(k) if k in ("run", "reviewed", "target", "mined") else getattr(manifest, k)) == v
                   for k, v in fields.items()):
                return experiment
        return None

    def baseline(self) -> Experiment:
        """The baseline experiment for the target's current config and the current reviewed sessions:
        found, or made, run and scored. New reviews make a new baseline, so a cycle's scores
        always compare experiments on the same sessions."""
        base = read_tree(self.project.base_config_dir)
        key = {"config_hash": tree_hash(base), "reviewed": self.reviewed_fingerprint, "target": self.target_key}
        experiment = None if self.rerun else self.find(kind="baseline", **key)
        if experiment is None:
            with self.writing("baseline"):
                experiment = None if self.rerun else self.find(kind="baseline", **key)  # made meanwhile?
                if experiment is None:
                    manifest = Manifest(id=self.experiments.next_id("baseline"), created=now(), kind="baseline",
                                        mining={"reviewed": key["reviewed"], "target": key["target"],
                                                "sessions": len(self.require_sessions())})
                    experiment = self.experiments.create(manifest, base, base,
                                                         "# Baseline\n\nThe target's own config, unchanged.\n")
                    self.rerun = False  # one new baseline per --rerun
        self.run(experiment)
        self.score(experiment)
        return experiment

    def mine(self, parent: Experiment) -> MiningResult:
        """Precedents in the training sessions, against the parent experiment's decisions."""
        return self._mine(self.train_indices, self.run(parent))

    def _mine(self, rows: np.ndarray, decisions: dict[str, dict], min_evidence: int | None = None) -> MiningResult:
        """``mine`` of the sessions at ``rows``, their fields taken from the columns read once (``columns``)."""
        config = self.project.config
        sessions = [self.sessions[i] for i in rows.tolist()]
        return mine(sessions, [decisions[s.session_id] for s in sessions], bands=config.bands,
                    min_evidence=min_evidence or config.min_evidence, entity_fields=config.entity_fields,
                    shared=self.columns.top_level(rows))

    # --- cross-validation (improver.crossval) ----------------------------------------
    @cached_property
    def fold_plan(self) -> tuple[str, list[np.ndarray]]:
        """("cv", k folds) or ("validation", [the validation split]): indices into ``sessions``, test split excluded."""
        config = self.project.config
        train = self.train_indices
        ids = [self.sessions[i].session_id for i in train.tolist()]
        if config.folds >= 2 and len(train) < config.cv_max_sessions:
            folds = crossval.folds_of(ids, config.folds)
            return "cv", [train[folds == k] for k in range(config.folds)]
        return "validation", [train[crossval.in_validation(ids, config.validation)]]

    def _fold_chain(self, experiment: Experiment) -> dict | None:
        """The experiment's own fold runs when they match today's plan (else its config stands for every fold)."""
        mode, groups = self.fold_plan
        cv = experiment.manifest.mining.get("cv")
        if experiment.manifest.parent is None or not cv or cv.get("mode") != "cv" or mode != "cv" \
                or len(cv.get("fold_runs", [])) != len(groups):
            return None
        return cv

    def fold_config(self, experiment: Experiment, fold: int) -> dict[str, str]:
        """The config fold ``fold`` reached by the experiment's cycles, mined without that fold's sessions."""
        cv = self._fold_chain(experiment)
        if cv is None:
            return read_tree(experiment.config_dir)
        manifest = experiment.manifest
        kept = {p.id for p in manifest.proposals}
        run = cv["fold_runs"][fold]
        proposals = [Proposal.model_validate({"source": "fold", "support": 0, "covered": 0, "precision": 0.0,
                                              "evidence_sessions": [], **{k: v for k, v in r.items() if k != "matches"}})
                     for r in run["proposals"] if r["matches"] in kept]
        parent = self.experiments.get(manifest.parent)
        return render_config(self.fold_config(parent, fold), proposals, run["guidance"] if proposals else [], manifest.cycle)

    def fold_decisions(self, experiment: Experiment, fold: int) -> dict[str, dict]:
        """Decisions of the experiment's fold config on every session (its own decisions when it has no fold chain)."""
        if self._fold_chain(experiment) is None:
            return self.run(experiment)
        key = (experiment.path, fold)
        if key not in self._fold_decisions:
            sessions = self.require_sessions()
            with tempfile.TemporaryDirectory(prefix="improver-fold-") as folder:
                _write_tree(Path(folder), self.fold_config(experiment, fold))
                results = self.decide(Path(folder), sessions, f"fold {fold + 1} of {experiment.id}", subset=True)
            self._fold_decisions[key] = {s.session_id: r for s, r in zip(sessions, results)}
        return self._fold_decisions[key]

    def cross_validate(self, parent: Experiment) -> CrossValidation:
        """Mine each fold on the others (against its own chain), then the refit; per refit precedent, its fold evidence."""
        config = self.project.config
        mode, groups = self.fold_plan
        sessions = self.require_sessions()
        train = self.train_indices
        human = np.array([s.human_decision for s in sessions], dtype=object)
        cycle = parent.manifest.cycle + 1
        runs = []
        for fold, scored in enumerate(groups):
            chain = self.fold_decisions(parent, fold)
            mined = np.setdiff1d(train, scored)
            # a fold sees part of the sessions, so a precedent's evidence in it scales down with them
            evidence = max(1, round(config.min_evidence * len(mined) / max(len(train), 1))) if mode == "cv" else None
            result = self._mine(mined, chain, evidence)
            taken = {rule.id for rule in parse_rules(yaml.safe_load(self.fold_config(parent, fold).get(RULES_FILE) or "null"),
                                                     RULES_FILE)}
            proposals = build_proposals(result, config.entity_fields, taken, cycle, evidence or config.min_evidence)
            masks = np.stack([self.columns.mask(p.when)[scored] for p in proposals]) if proposals else None
            fallback = np.array([chain[sessions[i].session_id]["decision"] for i in scored], dtype=object)
            effects = crossval.replay_effects(proposals, masks, fallback, human[scored])
            runs.append(FoldRun(fold, scored, result, proposals, effects, guidance_from(result)))
        refit = self.mine(parent) if mode == "cv" else runs[0].result
        taken = {rule.id for rule in load_overlay(parent.config_dir).rules}
        proposals = build_proposals(refit, config.entity_fields, taken, cycle, config.min_evidence)
        matched: dict[str, np.ndarray] = {}

        def rows(proposal):  # the training sessions a proposal's rule matches (fold rules share conditions)
            key = json.dumps(proposal.when, sort_keys=True)
            if key not in matched:
                matched[key] = self.columns.mask(proposal.when)[train]
            return matched[key]

        return CrossValidation(mode, len(runs), refit, runs, crossval.select(proposals, runs, len(runs), rows))

    def out_of_fold(self, experiment: Experiment) -> dict:
        """Agreement on every session scored by the fold config mined without it, with a 95% interval."""
        mode, groups = self.fold_plan
        agree = total = 0
        sessions = self.sessions
        for fold, scored in enumerate(groups):
            decisions = self.fold_decisions(experiment, fold)
            total += len(scored)
            agree += sum(decisions[sessions[i].session_id]["decision"] == sessions[i].human_decision for i in scored.tolist())
        low, high = crossval.wilson_interval(agree, total)
        if mode == "cv" and experiment.manifest.parent and self._fold_chain(experiment) is None:
            mode = "in-sample"  # made without cross-validation (e.g. by hand or over MCP): no fold chain to score
        return {"mode": mode, "folds": len(groups), "sessions": total, "agree": agree,
                "agreement": round(agree / total, 4) if total else None, "low": low, "high": high}

    def propose(self, parent: Experiment, result: MiningResult, cycle: int, run_id: str = "",
                cv: CrossValidation | None = None) -> Experiment | None:
        """A new experiment holding the parent's config plus one proposal per precedent (None if none);
        the one already holding that config from that parent, when one does.

        With ``cv`` (``cross_validate``), only the precedents stable across folds are proposed,
        each with its per-fold evidence, and the manifest keeps every fold's matching rules."""
        existing = self.find(parent=parent.id, kind="cycle", cycle=cycle, run=run_id) if run_id else None
        if existing:
            return existing
        taken = {rule.id for rule in load_overlay(parent.config_dir).rules}
        proposals = build_proposals(result, self.project.config.entity_fields, taken, cycle, self.project.config.min_evidence)
        if cv is not None:
            proposals = [p.model_copy(update={"cv": cv.evidence[p.precedent]}) for p in proposals if cv.stable(p.precedent)]
            proposals = self._deployable(parent, proposals)
        if not proposals:
            return None
        guidance = guidance_from(result)
        mining = {"run": run_id, "mined": self.mining_key, "train_sessions": result.sessions, "disagreements": result.disagreements,
                  "agreement": result.agreement, "ceiling": round(result.ceiling, 4),
                  "precedents": [p.model_dump(include={"name", "source", "decision", "description", "support",
                                                       "precision", "weak", "group_size"}) for p in result.precedents],
                  "findings": [f.model_dump() for f in result.findings]}
        if cv is not None:
            mining["cv"] = cv.manifest(proposals)
        return self._child(parent, proposals, guidance, "cycle", cycle, mining,
                           report(result, proposals, f"Mining report: cycle {cycle} from {parent.id}"))

    def _deployable(self, parent: Experiment, proposals: list[Proposal]) -> list[Proposal]:
        """The stable proposals that add agreement on the training sessions as they ship (``crossval.deployable``)."""
        if not proposals:
            return proposals
        train = self.train_indices
        decisions = self.run(parent)
        masks = np.stack([self.columns.mask(p.when)[train] for p in proposals])
        fallback = np.array([decisions[self.sessions[i].session_id]["decision"] for i in train], dtype=object)
        human = np.array([self.sessions[i].human_decision for i in train], dtype=object)
        return crossval.deployable(proposals, masks, fallback, human)

    def _child(self, parent: Experiment, proposals: list[Proposal], guidance: list[str], kind: str, cycle: int,
               mining: dict, report_text: str, slug: str | None = None) -> Experiment:
        config = render_config(read_tree(parent.config_dir), proposals, guidance, cycle)
        with self.writing("new experiment"):
            # The same config from the same parent stands, with its decisions and scores: made meanwhile by
            # this run, or by an earlier cycle run on the same reviews (which mines the same proposals).
            same = {"parent": parent.id, "kind": kind, "cycle": cycle, "config_hash": tree_hash(config)}
            existing = self.find(**same, run=mining["run"]) if mining.get("run") else None
            if existing is None and kind == "cycle":
                existing = self.find(**same)
            if existing is not None:
                return existing
            manifest = Manifest(id=self.experiments.next_id(slug or f"cycle-{cycle}" + ("" if kind == "cycle" else f"-{kind}")),
                                parent=parent.id, created=now(), kind=kind, cycle=cycle, proposals=proposals,
                                guidance=guidance, mining=mining)
            return self.experiments.create(manifest, config, read_tree(self.project.base_config_dir), report_text)

    def subset(self, experiment: Experiment, keep: list[str], kind: str, run_id: str = "") -> Experiment:
        """A child of ``experiment``'s parent with only the proposals in ``keep`` (gating, review)."""
        manifest = experiment.manifest
        unknown = set(keep) - {p.id for p in manifest.proposals}
        if unknown:
            raise ExperimentError(f"{experiment.id} has no proposal {', '.join(sorted(unknown))}; "
                                  f"its proposals are {', '.join(p.id for p in manifest.proposals)}")
        if manifest.parent is None:
            raise ExperimentError(f"{experiment.id} is a baseline and has no proposals to choose from")
        parent = self.experiments.get(manifest.parent)
        kept = [p for p in manifest.proposals if p.id in keep]
        mining = dict(manifest.mining, run=run_id, derived_from=experiment.id,
                      dropped=[p.id for p in manifest.proposals if p.id not in keep])
        text = (f"# {kind.title()} of {experiment.id}\n\nKeeps {len(kept)} of {len(manifest.proposals)} proposals: "
                f"{', '.join(p.id for p in kept) or 'none'}.\n\n" + (experiment.path / "report.md").read_text(encoding="utf-8"))
        return self._child(parent, kept, manifest.guidance if kept else [], kind, manifest.cycle, mining, text,
                           slug=f"cycle-{manifest.cycle}-{kind}")

    def rerun_of(self, experiment: Experiment) -> Experiment:
        """A new experiment with ``experiment``'s parent, config and proposals, to be run again
        (``--rerun``: recorded experiments are never overwritten)."""
        manifest = experiment.manifest
        with self.writing(f"rerun {experiment.id}"):
            copy = manifest.model_copy(update={
                "id": self.experiments.next_id(f"{experiment.id[5:]}-rerun"), "created": now(),
                "mining": dict(manifest.mining, rerun_of=experiment.id, target=self.target_key)})
            return self.experiments.create(copy, read_tree(experiment.config_dir), read_tree(self.project.base_config_dir),
                                           (experiment.path / "report.md").read_text(encoding="utf-8"))

    # --- gate ----------------------------------------------------------------------
    def check(self, margin: float = 0.0, split: str = "all", against: str | None = None):
        """The CI gate: the target's current config against the last accepted experiment (``improver.check``)."""
        from improver.check import check

        return check(self, margin=margin, split=split, against=against)

    # --- rerun and score -----------------------------------------------------------
    def _report(self, label: str, total: int):
        done = [0]

        def step(n: int) -> None:
            done[0] += n
            if self.progress:
                self.progress(label, done[0], total)
        return step

    @cached_property
    def target_key(self) -> str:
        """What identifies the target's behaviour: how it is run, and its version or code (the rerun key)."""
        from improver.runners.cache import fingerprint

        spec = self.project.config.target
        how = spec.model_dump(mode="json", include={"callable", "command", "python_path", "runner", "version"})
        return hashlib.sha256(json.dumps([how, fingerprint(spec, self.project.root)], sort_keys=True).encode()).hexdigest()[:16]

    @cached_property
    def runner(self):
        return runner_for(self.project)

    @cached_property
    def subset_runner(self):
        """The runner for reruns of a few sessions (leave-one-out, folds, new sessions): their errors are
        judged against every reviewed session in ``decide``, not against the few rerun."""
        target = self.project.config.target.model_copy(update={"max_error_share": 1.0})
        return runner_for(Project(self.project.root, self.project.config.model_copy(update={"target": target})), pool=self.runner)

    def _answering(self, runner):
        """The runner that answers: with ``--rerun``, the one under the decision cache."""
        return getattr(runner, "inner", runner) if self.rerun_answers else runner

    def start_target(self) -> None:
        """Start the target's worker processes ahead of a baseline the decision cache has no answer for
        (a new project, config or agent), before the sessions are read, so the target's import overlaps
        the reading. Runners without workers (command, async, Ray) have nothing to start."""
        start = getattr(self._answering(self.runner), "start", None)
        if start is not None and "sessions" not in self.__dict__:
            with self.store() as store:
                start(self.project.base_config_dir, store.review_count())

    def prepare_target(self) -> None:
        """Start every worker a rerun of all the sessions can use, before a stage that keeps this process
        busy on one core (mining), so their imports take the idle ones (``CallableRunner.prepare``)."""
        prepare = getattr(self._answering(self.runner), "prepare", None)
        if prepare is not None:
            prepare(len(self.require_sessions()))

    def decide(self, config_dir: Path, sessions: list[ReviewedSession], label: str, subset: bool = False,
               answered: Callable[[int, list[dict]], None] | None = None) -> list[dict]:
        """The target's answers on these sessions; ``RunFailedError`` (sessions named) past the error share
        (of every reviewed session when ``subset``: a rule's few matched sessions may all be ones that raise).
        ``answered(start, answers)`` gets every answer once, slice by slice as they come where the runner streams."""
        try:
            runner = self._answering(self.subset_runner if subset else self.runner)
            answers = run_many(runner, [([s.case for s in sessions], config_dir)], self._report(label, len(sessions)),
                               (lambda _job, start, found: answered(start, found)) if answered else None)[0]
            ErrorBudget.check(answers, self.project.config.target.max_error_share, len(self.sessions) if subset else None)
        except RunFailedError as error:
            raise error.named([s.session_id for s in sessions]) from None
        return answers

    def decide_many(self, jobs: list[tuple[Path, list[ReviewedSession]]], label: str) -> list[list[dict]]:
        """Reruns of a few sessions each under its own config folder, run as one batch (``runners.run_many``):
        each job's answers, judged as ``decide(..., subset=True)`` judges them, job by job."""
        runner = self._answering(self.subset_runner)
        try:
            answers = run_many(runner, [([s.case for s in sessions], folder) for folder, sessions in jobs],
                               self._report(label, sum(len(sessions) for _, sessions in jobs)))
        except RunFailedError as error:
            raise error.named([s.session_id for _, sessions in jobs for s in sessions]) from None
        self._judge_subsets(jobs, answers)
        return answers

    def _judge_subsets(self, jobs: list[tuple[Path, list[ReviewedSession]]], answers: list[list[dict]]) -> None:
        """``RunFailedError`` (its sessions named) for a rerun of a few sessions whose errors pass the
        error share of every reviewed session."""
        for (_folder, sessions), found in zip(jobs, answers):
            try:
                ErrorBudget.check(found, self.project.config.target.max_error_share, len(self.sessions))
            except RunFailedError as error:
                raise error.named([s.session_id for s in sessions]) from None

    def decide_with(self, config_dir: Path, sessions: list[ReviewedSession], label: str,
                    answered: Callable[[int, list[dict]], None], behind: list[tuple[Path, list[ReviewedSession]]],
                    ) -> tuple[list[dict], list[list[dict]]]:
        """``decide`` of these sessions with ``decide_many``'s reruns queued behind them in the same batch,
        so the workers go straight on to them. Its error budget stops the batch early as ``decide``'s
        stops its run, counted here on its answers as they stream: only for a runner that streams
        (``streams_answers``). Its answers, and each rerun's."""
        share = self.project.config.target.max_error_share
        budget = ErrorBudget(len(sessions), share)

        def came(job: int, start: int, answers: list[dict]) -> None:
            if job == 0:
                budget.add_all(start, answers)  # RunFailedError past the share: the batch stops
                answered(start, answers)
        jobs = [([s.case for s in sessions], config_dir)] + [([s.case for s in few], folder) for folder, few in behind]
        try:  # the subset runner has no budget of its own: each job is judged here
            results = run_many(self._answering(self.subset_runner), jobs,
                               self._report(label, sum(len(cases) for cases, _ in jobs)), came)
            ErrorBudget.check(results[0], share)
        except RunFailedError as error:
            raise error.named([s.session_id for s in sessions]) from None
        self._judge_subsets(behind, results[1:])
        return results[0], results[1:]

    def streams_answers(self, config_dir: Path) -> bool:
        """Whether a rerun under this config hands over its answers as they come: the target's runner
        streams them (the local pool) and the decision cache holds none under the config."""
        runner = self._answering(self.runner)
        holds = getattr(runner, "holds", None)
        return bool(getattr(getattr(runner, "inner", runner), "streams", False)) and not (holds and holds(config_dir))

    def run(self, experiment: Experiment) -> dict[str, dict]:
        """The experiment's decision on every reviewed session (rerun once and kept, or read once)."""
        return self.run_with(experiment, [])[0]

    def run_with(self, experiment: Experiment, behind: list[tuple[Path, list[ReviewedSession]]]
                 ) -> tuple[dict[str, dict], list[list[dict]] | None]:
        """``run``, with reruns ``(config folder, sessions)`` queued behind the experiment's when it is rerun
        now and the runner streams (``decide_with``): its decisions, and their answers (None when not run)."""
        if experiment.path in self._decisions:
            return self._decisions[experiment.path], None
        decisions = experiment.decisions
        if decisions is not None:
            missing = [s for s in self.require_sessions() if s.session_id not in decisions]
            if missing:  # reviewed after this experiment ran: decided now, kept in memory (the file is written once)
                results = self.decide(experiment.config_dir, missing, f"run {experiment.id} (new sessions)", subset=True)
                decisions = dict(decisions, **{s.session_id: {"session_id": s.session_id, **r} for s, r in zip(missing, results)})
            self._decisions[experiment.path] = decisions
            return decisions, None
        with self.writing(f"run {experiment.id}"):
            if experiment.decisions is not None:  # written meanwhile by another writer: that one stands
                return self.run(experiment), None
            sessions = self.require_sessions()
            rows: list = [None] * len(sessions)
            file = DecisionsFile(experiment)

            def came(start: int, answers: list[dict]) -> None:  # rows made, scanned and written out as they come
                rows[start:start + len(answers)] = made = [{"session_id": s.session_id, **a} for s, a in
                                                           zip(sessions[start:start + len(answers)], answers)]
                file.add(start, made)

            if behind and self.streams_answers(experiment.config_dir):
                label = f"run {experiment.id} and leave out each of {len(behind)} proposals"
                _answers, answers_behind = self.decide_with(experiment.config_dir, sessions, label, came, behind)
            else:
                self.decide(experiment.config_dir, sessions, f"run {experiment.id}", answered=came)
                answers_behind = None
            if None in rows:  # a runner that streams must hand over every answer
                raise ImproverError(f"the target runner handed over {len(rows) - rows.count(None)} of {len(rows)} "
                                    "answers; nothing was written (report this as a bug in the runner)")
            try:
                file.write()
            except ExperimentError:  # written meanwhile by another run of the same stage: that one stands
                return self.run(experiment), answers_behind
        decisions = {row["session_id"]: row for row in rows}  # kept, not read back
        self._decisions[experiment.path] = decisions
        return decisions, answers_behind

    def score(self, experiment: Experiment, leave_one_out: bool = True) -> dict:
        """Scores of an experiment against the humans and its parent (computed once, then read back)."""
        if experiment.results is not None:
            return experiment.results
        with self.writing(f"score {experiment.id}"):
            return experiment.results or self._score(experiment, leave_one_out)

    def _score(self, experiment: Experiment, leave_one_out: bool) -> dict:
        parent = self.experiments.get(experiment.manifest.parent) if experiment.manifest.parent else None
        with tempfile.TemporaryDirectory(prefix="improver-loo-") as folder:
            loo = self._leave_one_out(experiment, parent, Path(folder)) if leave_one_out and parent else {}
            reruns = [job for job in loo.values() if job[1]]  # the proposals whose rules match some session
            ran, answers = self.run_with(experiment, reruns)
            return self._scored(experiment, parent, {k: v["decision"] for k, v in ran.items()}, loo, reruns, answers)

    def _scored(self, experiment: Experiment, parent: Experiment | None, decisions: dict[str, str],
                loo: dict[str, tuple[Path, list[ReviewedSession]]], reruns: list[tuple[Path, list[ReviewedSession]]],
                loo_answers: list[list[dict]] | None) -> dict:
        sessions = self.require_sessions()
        parent_decisions = {k: v["decision"] for k, v in self.run(parent).items()} if parent else None
        results = score(sessions, decisions, self.project.config.holdout, parent_decisions)
        with self.store() as store:
            picks = recorded_picks(store.db)
        if picks:  # some reviews were chosen by the queue: the honest estimates beside the raw figures
            results["sampling"] = sampled_agreement(sessions, decisions, picks)
            if results["sampling"] and experiment.manifest.kind == "baseline":  # the agent's own, model-assisted
                results["sampling"]["model_assisted"] = model_assisted(self, experiment, reference_experiment(self))
        results.update(experiment=experiment.id, parent=experiment.manifest.parent, scored=now(),
                       reproduce=f"improver score {experiment.id}")
        results["errors"]["examples"] = sorted({v.get("error", "") for v in self.run(experiment).values()
                                                if v["decision"] == ERROR})[:5]
        if loo:
            if loo_answers is None:  # not run behind the experiment's own rerun: run now, as one batch
                loo_answers = self.decide_many(reruns, f"leave out each of {len(reruns)} proposals")
            results["per_proposal"] = self._effects(loo, loo_answers, decisions)
            for p in experiment.manifest.proposals:
                if p.cv:  # the out-of-fold effects it was proposed on, summed and per fold
                    results["per_proposal"][p.id].update(cv=p.cv["oof_effect"], folds=[f["effect"] for f in p.cv["per_fold"]])
        results["cv"] = self.out_of_fold(experiment)
        if parent:
            before = (parent.results or {}).get("cv") or self.out_of_fold(parent)
            if before["agreement"] is not None and results["cv"]["agreement"] is not None:
                results["cv"]["change"] = round(results["cv"]["agreement"] - before["agreement"], 4)
        results["notices"] = notices(results, len(experiment.manifest.proposals))
        try:
            experiment.write_results(results)
        except ExperimentError:
            pass
        return experiment.results

    def _leave_one_out(self, experiment: Experiment, parent: Experiment, folder: Path
                       ) -> dict[str, tuple[Path, list[ReviewedSession]]]:
        """For the leave-one-out effect of each proposal (``_effects``: agreements it adds, per split): a
        config folder (in ``folder``) with every other proposal, and the sessions its rule matches.
        Removing a rule can only change decisions on those, so only those are rerun without it, every
        proposal's rerun in one batch (behind the experiment's own rerun, where it is rerun now)."""
        manifest = experiment.manifest
        if not manifest.proposals:
            return {}
        parent_config = read_tree(parent.config_dir)
        loo = {}
        for index, proposal in enumerate(manifest.proposals):
            matched = [self.sessions[i] for i in np.flatnonzero(self.columns.mask(proposal.when))]
            loo[proposal.id] = (folder / f"{index:04d}", matched)
            if matched:
                others = [p for p in manifest.proposals if p.id != proposal.id]
                _write_tree(loo[proposal.id][0], render_config(parent_config, others, manifest.guidance if others else [],
                                                               manifest.cycle))
        return loo

    def _effects(self, loo: dict[str, tuple[Path, list[ReviewedSession]]], answers: list[list[dict]],
                 decisions: dict[str, str]) -> dict:
        """Each proposal's agreements gained per split from its leave-one-out answers (one list per
        proposal with matched sessions, in order)."""
        effects = {}
        holdout = self.project.config.holdout
        rerun = iter(answers)
        for proposal_id, (_folder, matched) in loo.items():
            gains = Counter({"train": 0, "heldout": 0})
            for s, result in zip(matched, next(rerun) if matched else []):
                if decisions[s.session_id] != result["decision"]:  # only a changed decision gains or loses
                    gains[split_of(s.session_id, holdout)] += (decisions[s.session_id] == s.human_decision) \
                        - (result["decision"] == s.human_decision)
            effects[proposal_id] = {"train": gains["train"], "heldout": gains["heldout"], "sessions_matched": len(matched)}
        return effects


@contextmanager
def collector_paused():
    """The cyclic garbage collector paused, for work that builds many long-lived objects without
    cycles (sessions, rows of decisions, answers): refcounts free what they drop, and the collector
    makes one pass afterwards instead of walking them all again and again meanwhile (at 100k
    sessions a cycle spent 1.9 s of CPU in 14 full passes)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _write_tree(folder: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content, encoding="utf-8")
