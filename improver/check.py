"""The CI gate: does the target's current config still agree with the reviewers as well as
the last accepted experiment did?

``check`` reruns the target with its own config folder (as it is on the branch under
test) on every reviewed session, scores it with the accepted experiment's decisions as
the parent, and fails when agreement on the chosen split falls below the accepted
experiment's by more than ``margin``. The accepted experiment is the newest one whose
status is ``accepted`` or ``merged`` (``improver review --accept``), or the one named.
Its recorded decisions are the reference; sessions reviewed after it was scored are
decided with its config. ``junit_xml`` and ``markdown`` render the outcome for CI.
"""
from __future__ import annotations

import html
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from improver.errors import ExperimentError, ImproverError
from improver.experiments import read_tree, tree_hash
from improver.runners import ERROR
from improver.scoring import SPLITS, score

if TYPE_CHECKING:
    from improver.workspace import Workspace

GATED_SPLITS = (*SPLITS, "all")
ACCEPTED = ("accepted", "merged")
MAX_LISTED = 50


@dataclass
class CheckOutcome:
    """What ``check`` measured and whether the gate passed."""

    reference: str  # the accepted experiment compared against
    split: str
    margin: float
    accepted: float | None  # the reference's agreement on ``split``
    current: float | None  # the current config's agreement on ``split``
    passed: bool
    config_hash: str
    scores: dict  # ``score`` of the current config with the reference as parent
    reference_scores: dict
    regressions: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def change(self) -> float | None:
        return None if self.accepted is None or self.current is None else round(self.current - self.accepted, 4)


def last_accepted(ws: Workspace):
    """The newest accepted or merged experiment; ExperimentError saying how to accept one if none."""
    shipped = [e for e in ws.experiments.all() if e.status in ACCEPTED]
    if not shipped:
        raise ExperimentError("no accepted experiment to check against: accept one with "
                              "`improver review EXP --accept ID...` (see `improver log`), or pass --against EXP")
    return shipped[-1]


def check(ws: Workspace, margin: float = 0.0, split: str = "all", against: str | None = None) -> CheckOutcome:
    """Rerun the target's current config and compare its agreement with the accepted experiment's."""
    if split not in GATED_SPLITS:
        raise ImproverError(f"cannot gate on split {split!r}; use one of {', '.join(GATED_SPLITS)}")
    if margin < 0:
        raise ImproverError(f"--margin must be 0 or more (a share: 0.02 is two points), not {margin}")
    reference = ws.experiments.get(against) if against else last_accepted(ws)
    sessions = ws.require_sessions()
    recorded = {k: v["decision"] for k, v in ws.run(reference).items()}
    missing = [s for s in sessions if s.session_id not in recorded]
    if missing:  # reviewed after the reference was scored: decide them with its config
        decided = ws.decide(reference.config_dir, missing, f"decide {len(missing)} new sessions with {reference.id}")
        recorded.update({s.session_id: r["decision"] for s, r in zip(missing, decided)})
    base = ws.project.base_config_dir
    current = {s.session_id: r["decision"] for s, r in zip(sessions, ws.decide(base, sessions, "check current config"))}
    holdout = ws.project.config.holdout
    scores = score(sessions, current, holdout, parent=recorded)
    reference_scores = score(sessions, recorded, holdout)
    accepted, now = reference_scores[split]["agreement"], scores[split]["agreement"]
    passed = now is not None and (accepted is None or now >= accepted - margin - 1e-9)
    return CheckOutcome(reference=reference.id, split=split, margin=margin, accepted=accepted, current=now,
                        passed=passed, config_hash=tree_hash(read_tree(base)), scores=scores,
                        reference_scores=reference_scores, regressions=scores["regressions"],
                        errors=[sid for sid, d in current.items() if d == ERROR])


def pct(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def verdict(outcome: CheckOutcome) -> str:
    change = "" if outcome.change is None else f" ({outcome.change * 100:+.1f} pts)"
    head = "passed" if outcome.passed else "FAILED"
    return (f"improver check {head}: agreement on {outcome.split} sessions {pct(outcome.current)} against "
            f"{pct(outcome.accepted)} for accepted {outcome.reference}{change}, margin {outcome.margin * 100:g} pts; "
            f"{len(outcome.regressions)} sessions regressed, {len(outcome.errors)} errors")


def junit_xml(outcome: CheckOutcome) -> str:
    """A JUnit report: one test case for the gate, one per regressed session (failures when the gate fails)."""
    suites = ElementTree.Element("testsuites", name="improver check")
    gate = ElementTree.SubElement(suites, "testsuite", name="improver check: agreement", tests="1",
                                  failures="0" if outcome.passed else "1")
    case = ElementTree.SubElement(gate, "testcase", classname="improver.check",
                                  name=f"agreement on {outcome.split} >= accepted {outcome.reference} - margin")
    if not outcome.passed:
        ElementTree.SubElement(case, "failure", message=verdict(outcome)).text = "\n".join(
            f"{r['session_id']} ({r['split']}): human {r['human']}, accepted {r['before']}, now {r['now']}"
            for r in outcome.regressions)
    ElementTree.SubElement(case, "system-out").text = verdict(outcome)
    regressed = ElementTree.SubElement(suites, "testsuite", name="improver check: regressed sessions",
                                       tests=str(len(outcome.regressions)),
                                       failures="0" if outcome.passed else str(len(outcome.regressions)),
                                       skipped=str(len(outcome.regressions)) if outcome.passed else "0")
    for r in outcome.regressions:
        case = ElementTree.SubElement(regressed, "testcase", classname=f"improver.check.{r['split']}",
                                      name=f"session {r['session_id']}")
        message = f"human {r['human']}: agreed under {outcome.reference} ({r['before']}), now {r['now']}"
        ElementTree.SubElement(case, "skipped" if outcome.passed else "failure",
                               message=message + (" (within the margin)" if outcome.passed else ""))
    ElementTree.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(suites, encoding="unicode") + "\n"


def markdown(outcome: CheckOutcome) -> str:
    """A Markdown summary (fits a GitHub Actions step summary): verdict, splits, regressed sessions."""
    mark = "✅" if outcome.passed else "❌"
    out = [f"## {mark} improver check {'passed' if outcome.passed else 'failed'}", "",
           f"Agreement with the human reviewers on **{outcome.split}** sessions: {pct(outcome.current)} for the current "
           f"config (`{outcome.config_hash}`) against {pct(outcome.accepted)} for the accepted experiment "
           f"`{outcome.reference}`; the gate allows a drop of {outcome.margin * 100:g} pts.", "",
           f"| split | accepted `{outcome.reference}` | current config | change |", "|---|---|---|---|"]
    for split in GATED_SPLITS:
        was, now = outcome.reference_scores[split], outcome.scores[split]
        change = (outcome.scores.get("change") or {}).get(split)
        out.append(f"| {split} | {pct(was['agreement'])} ({was['agree']}/{was['sessions']}) | "
                   f"{pct(now['agreement'])} ({now['agree']}/{now['sessions']}) | "
                   f"{'–' if change is None else f'{change * 100:+.1f} pts'} |")
    out += ["", f"{outcome.scores.get('fixed', 0)} sessions fixed, {len(outcome.regressions)} regressed, "
                f"{len(outcome.errors)} errors."]
    if outcome.regressions:
        out += ["", "### Sessions that regressed", "", "| session | split | human | accepted | now |", "|---|---|---|---|---|"]
        out += [f"| `{r['session_id']}` | {r['split']} | {html.escape(r['human'])} | {html.escape(r['before'])} | "
                f"{html.escape(r['now'])} |" for r in outcome.regressions[:MAX_LISTED]]
        if len(outcome.regressions) > MAX_LISTED:
            out.append(f"\nand {len(outcome.regressions) - MAX_LISTED} more (see the JUnit report)")
    if outcome.errors:
        out += ["", f"The target errored on: {', '.join(f'`{s}`' for s in outcome.errors[:MAX_LISTED])}"]
    out += ["", f"Reproduce: `improver check --against {outcome.reference} --split {outcome.split} "
                f"--margin {outcome.margin:g}`", ""]
    return "\n".join(out)
