"""``improver init``: a new project folder, ready for a first cycle on your own agent.

It writes ``improver.yaml``, a ``config/`` folder (what pull requests patch), an agent stub
that reads improver's learned rules, notes and prompt fragment (the overlay), and a
``.gitignore`` holding ``.improver/``. Given a trace file, it proposes the entity fields,
numeric bands and decision labels from the data instead of asking for them. Files that
already exist are left as they are, and an existing ``improver.yaml`` is never replaced.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from improver.errors import ProjectError
from improver.project import PROJECT_FILE, write_project_file

AGENT_FILE = "my_agent.py"
GITIGNORE_LINE = ".improver/"
PROMPT = "You review each case and decide one of: {labels}. Say why, and cite the policy you used.\n"

CALLABLE_STUB = '''"""Your agent as improver calls it: decide(case, config_dir) -> {{"decision": ...}}.

Replace the body below with your agent (your model call, your tools). Keep the overlay
lines: they apply what improver learned from your reviewers, from the experiment's
config folder (learned_rules.yaml, entity_notes.yaml, prompt_fragment.md).
"""
from pathlib import Path

from improver.runtime import load_overlay

DECISIONS = {labels!r}


def decide(case: dict, config_dir: Path) -> dict:
    overlay = load_overlay(config_dir)
    rule = overlay.match(case)  # the first learned rule whose condition holds, or None
    if rule:
        return {{"decision": rule.decision, "confidence": rule.confidence, "reasoning": rule.reason,
                "cited": [f"rule:{{rule.id}}"]}}
    prompt = (Path(config_dir) / "prompt.md").read_text() + overlay.prompt_fragment
    notes = overlay.notes_for(case)  # what reviewers said about this case's entities
    # Your agent goes here: call your model with `prompt`, `notes` and the case.
    return {{"decision": DECISIONS[0], "confidence": "low", "reasoning": "stub agent: no learned rule matched",
            "cited": []}}
'''

COMMAND_STUB = CALLABLE_STUB.replace(
    '"""Your agent as improver calls it: decide(case, config_dir) -> {{"decision": ...}}.',
    '"""Your agent as improver calls it: `python my_agent.py CONFIG_DIR` reads cases as JSONL on stdin\n'
    'and writes one decision a line on stdout.') + '''

if __name__ == "__main__":
    import json
    import sys

    for line in sys.stdin:
        print(json.dumps(decide(json.loads(line), Path(sys.argv[1]))), flush=True)
'''


@dataclass
class Guess:
    """What the traces suggest for improver.yaml."""

    sessions: int = 0
    entity_fields: list[str] = field(default_factory=list)
    bands: dict[str, list[float]] = field(default_factory=dict)
    decisions: list[str] = field(default_factory=list)


@dataclass
class InitResult:
    folder: Path
    written: list[str]
    kept: list[str]
    config: dict
    guess: Guess | None

    def as_dict(self) -> dict:
        guess = None if self.guess is None else vars(self.guess)
        return {"folder": str(self.folder), "written": self.written, "kept": self.kept, "config": self.config,
                "from_traces": guess}


def cut_points(values: list[float]) -> list[float]:
    """Two cut points at the terciles, rounded to two significant digits (one when the values are few)."""
    ordered = sorted(values)
    cuts = []
    for q in (1 / 3, 2 / 3):
        value = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
        rounded = float(f"{value:.2g}")
        cuts.append(int(rounded) if rounded.is_integer() else rounded)
    return sorted(set(cuts)) if len(set(values)) > 2 else []


def guess_from_traces(path: Path) -> Guess:
    """Entity fields, numeric bands and decision labels proposed from a trace file's cases and decisions.

    An entity field holds short strings that repeat (a vendor, a plan), not ids or free text; a
    numeric field gets two band cuts at its terciles; the labels are every decision seen, commonest first.
    """
    from improver.models import DecisionEvent, ReviewEvent
    from improver.sources import open_source

    cases, labels = {}, Counter()
    for event in open_source(str(path)).events():
        if isinstance(event, DecisionEvent):
            cases[event.session_id] = event.case
        if isinstance(event, (DecisionEvent, ReviewEvent)):
            labels[event.decision] += 1
    if not cases:
        raise ProjectError(f"{path} holds no agent decisions improver can read; check it with `improver ingest` "
                           "or give --entity-fields, --band and --decisions yourself")
    strings: dict[str, list[str]] = {}
    numbers: dict[str, list[float]] = {}
    for case in cases.values():
        for key, value in case.items():
            if isinstance(value, bool):
                continue
            if isinstance(value, str):
                strings.setdefault(key, []).append(value)
            elif isinstance(value, (int, float)):
                numbers.setdefault(key, []).append(float(value))
    entities = []
    for key, values in strings.items():
        counts = Counter(values)
        short = sum(len(v.split()) for v in values) / len(values) <= 3  # names, not sentences
        if short and 1 < len(counts) <= max(2, len(values) // 3) and counts.most_common(1)[0][1] >= 3:
            entities.append(key)
    bands = {key: cuts for key, values in numbers.items() if (cuts := cut_points(values))}
    return Guess(len(cases), entities, bands, [label for label, _ in labels.most_common()])


def init_project(folder: Path, agent: str = "callable", entity_fields: list[str] | None = None,
                 bands: dict[str, list[float]] | None = None, decisions: list[str] | None = None,
                 traces: Path | None = None) -> InitResult:
    """Scaffold a project in ``folder``; given values win over what ``traces`` suggest."""
    if agent not in ("callable", "command"):
        raise ProjectError(f"--agent {agent!r}: give 'callable' (a decide() function) or 'command' (a program)")
    folder = folder.resolve()
    if (folder / PROJECT_FILE).exists():
        raise ProjectError(f"{folder / PROJECT_FILE} exists already; edit it, or init another folder")
    guess = guess_from_traces(traces) if traces else None
    labels = decisions or (guess.decisions if guess else []) or ["approve", "reject"]
    target = ({"callable": "my_agent:decide", "python_path": "."} if agent == "callable"
              else {"command": ["{python}", AGENT_FILE, "{config_dir}"]})
    config = {"target": {**target, "config": "config"},
              "entity_fields": entity_fields if entity_fields is not None else (guess.entity_fields if guess else []),
              "bands": bands if bands is not None else (guess.bands if guess else {}),
              "decisions": labels, "holdout": 0.0}  # cross-validation uses every review; a locked split is opt-in
    folder.mkdir(parents=True, exist_ok=True)
    written, kept = [], []

    def write(name: str, text: str) -> None:
        path = folder / name
        if path.exists():
            kept.append(name)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(name)

    write("config/prompt.md", PROMPT.format(labels=", ".join(labels)))
    write(AGENT_FILE, (CALLABLE_STUB if agent == "callable" else COMMAND_STUB).format(labels=labels))
    gitignore = folder / ".gitignore"
    lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    if GITIGNORE_LINE not in lines and ".improver" not in lines:
        gitignore.write_text("".join(f"{line}\n" for line in [*lines, GITIGNORE_LINE]), encoding="utf-8")
        written.append(".gitignore")
    write_project_file(folder, config)
    written.append(PROJECT_FILE)
    return InitResult(folder, written, kept, config, guess)
