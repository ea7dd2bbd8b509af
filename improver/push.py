"""Results back where the traces came from: an experiment pushed to Phoenix.

``push_to_phoenix`` uploads the reviewed sessions as a Phoenix dataset (input: the
session id and its case; expected output: the human decision, with the reviewer and
their words; splits: train / heldout) and records the experiment's decisions on it as a
Phoenix experiment run, with agreement with the reviewer as its evaluation. It uses
Phoenix's own client library (``pip install 'agent-improver[phoenix]'``). The task replays the
decisions the experiment's rerun recorded: nothing is decided again, so Phoenix shows
exactly what improver scored. As for ingest, ``PHOENIX_API_KEY`` is sent only to a
server the project names in improver.yaml (``sources: {remote: [...]}``).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from improver.errors import ExperimentError, ImproverError
from improver.experiments import Experiment
from improver.sources.phoenix import SCHEMES, origin, phoenix_client
from improver.workspace import Workspace


@dataclass
class PushOutcome:
    dataset_id: str
    dataset_name: str
    experiment_id: str  # Phoenix's id of the experiment run
    examples: int
    agreement: float | None
    url: str  # where to look in Phoenix


def phoenix_base(spec: str) -> str:
    """``http(s)://host:port`` from ``phoenix+http(s)://host:port[/...]``."""
    if urlsplit(spec).scheme not in SCHEMES or not urlsplit(spec).netloc:
        raise ImproverError(f"push to {spec!r}: use phoenix+http://HOST:PORT (or phoenix+https://...)")
    return origin(spec)


def examples_of(ws: Workspace) -> list[dict]:
    """One Phoenix dataset example per reviewed session."""
    return [{"input": {"session_id": s.session_id, "case": s.case},
             "output": {"decision": s.human_decision, "reviewer": s.reviewer, "reasoning": s.human_reasoning},
             "metadata": {"session_id": s.session_id, "precedent": s.precedent, "traced_agent_decision": s.agent_decision},
             "splits": ws.split(s.session_id)}
            for s in ws.require_sessions()]


def push_to_phoenix(ws: Workspace, spec: str, experiment: Experiment, dataset_name: str | None = None) -> PushOutcome:
    """Upload the reviewed sessions as a dataset and the experiment's decisions as a run on it."""
    base = phoenix_base(spec)
    results = ws.score(experiment)
    decisions = ws.run(experiment)
    name = dataset_name or f"improver {ws.project.root.name} {experiment.id}"
    examples = examples_of(ws)
    ws.leak_scan.check_rows(examples, f"the Phoenix dataset {name!r}")  # the final leak scan, before anything is sent
    with phoenix_client(spec, ws.project.remote_sources, "pushing results to Phoenix") as client:
        existing = {d["name"] for d in client.datasets.list()}
        if name in existing:
            raise ExperimentError(f"Phoenix at {base} already has a dataset named {name!r} (pushed before?); "
                                  "pass --dataset NAME, or delete it in Phoenix first")
        dataset = client.datasets.create_dataset(name=name, examples=examples, dataset_description=(
            f"Reviewed sessions of improver project {ws.project.root.name}: the human decision is the expected output."))

        def replay(input: dict) -> dict:  # noqa: A002  (Phoenix binds the argument by this name)
            row = decisions[input["session_id"]]
            return {"decision": row["decision"], "confidence": row.get("confidence"),
                    "reasoning": row.get("reasoning", ""), "cited": row.get("cited", [])}

        def agreement(output: dict, expected: dict) -> dict:
            agrees = output["decision"] == expected["decision"]
            return {"score": float(agrees), "label": "agree" if agrees else "disagree"}

        manifest = experiment.manifest
        ran = client.experiments.run_experiment(
            dataset=dataset, task=replay, evaluators={"agreement": agreement}, experiment_name=experiment.id,
            experiment_description=f"improver experiment {experiment.id} ({manifest.kind}, cycle {manifest.cycle}, "
                                   f"parent {manifest.parent}): the agent's decision per reviewed session",
            experiment_metadata={"improver_experiment": experiment.id, "parent": manifest.parent, "kind": manifest.kind,
                                 "cycle": manifest.cycle, "config_hash": manifest.config_hash,
                                 "proposals": [p.id for p in manifest.proposals],
                                 **{f"agreement_{k}": v["agreement"] for k, v in results.items()
                                    if isinstance(v, dict) and "agreement" in v}},
            print_summary=False)
    experiment_id = ran["experiment_id"] if isinstance(ran, dict) else ran.experiment_id
    return PushOutcome(dataset_id=dataset.id, dataset_name=name, experiment_id=experiment_id,
                       examples=len(dataset.examples), agreement=(results.get("all") or {}).get("agreement"),
                       url=f"{base}/datasets/{dataset.id}/experiments")
