"""Precedents tracked over time: a stable id each, a status, and override counts per week.

Every ``track`` mines the reviewed sessions against the baseline (what the humans know
that the agent's own config does not) and matches each precedent found to the registry
in ``.improver/precedents.json``: by its tag, else by its decision and condition, else
by its decision and overlapping override sessions (Jaccard >= ``SAME_EVIDENCE``), never
by its position in the mining output. Matched precedents keep their id. Status:

- ``new``: first seen in this observation;
- ``growing``: more override sessions than at the last observation;
- ``handled``: the accepted (or merged) experiment ships a rule for it;
- ``regressed``: it was handled, and the accepted experiment no longer covers it;
- ``stable``: seen before, no more overrides; ``not-seen``: not found this time.

An observation is dated by the newest review in the store (data time, so replaying
history gives the same weeks), and a repeated ``track`` with no new reviews changes
nothing.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from improver.conditions import describe, matches
from improver.errors import ImproverError
from improver.queue import proposals_by_rule

if TYPE_CHECKING:
    from improver.workspace import Workspace

REGISTRY = "precedents.json"
SAME_EVIDENCE = 0.5


def week_of(ts: str | None) -> str:
    """ISO week (``2026-W45``) of a timestamp's date; ``unknown`` when it has none."""
    try:
        year, week, _ = date.fromisoformat((ts or "")[:10]).isocalendar()
    except ValueError:
        return "unknown"
    return f"{year}-W{week:02d}"


def _load(path: Path) -> dict:
    if not path.exists():
        return {"next": 1, "observations": [], "precedents": []}
    try:
        registry = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(registry, dict) or not {"next", "observations", "precedents"} <= set(registry):
            raise ValueError("not a precedent registry")
    except (ValueError, UnicodeDecodeError) as error:
        raise ImproverError(f"{path} is damaged ({error}): restore it from a backup, or move it aside to start the "
                            "registry again (the precedents' ids then start over at P0001)") from None
    return registry


def _save(path: Path, registry: dict) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(registry, handle, indent=1, sort_keys=True)
    os.replace(temporary, path)


def _members(precedent, sessions) -> list:
    """The override sessions the precedent explains: its tag, or its condition, with its decision."""
    return [s for s in sessions if s.human_decision == precedent.decision and s.agent_decision != s.human_decision
            and (s.precedent == precedent.name if precedent.source == "tag"
                 else bool(precedent.condition) and matches(precedent.condition, s.case))]


def _match(found, members: set[str], entries: list[dict], taken: set[str]) -> dict | None:
    def free(entry):
        return entry["id"] not in taken and entry["decision"] == found.decision

    for entry in entries:
        if free(entry) and found.source == "tag" and entry["source"] == "tag" and entry["name"] == found.name:
            return entry
    for entry in entries:
        if free(entry) and found.condition and entry["condition"] == found.condition:
            return entry
    best, score = None, SAME_EVIDENCE
    for entry in entries:
        if free(entry) and members:
            overlap = len(members & set(entry["sessions"])) / len(members | set(entry["sessions"]))
            if overlap >= score:
                best, score = entry, overlap
    return best


def _accepted(ws: "Workspace"):
    """The newest accepted (or merged) experiment with rules, or None."""
    accepted = [e for e in ws.experiments.all() if e.status in ("accepted", "merged") and e.manifest.proposals]
    return accepted[-1] if accepted else None


def _handled(accepted, ws: "Workspace", entry: dict) -> str | None:
    """The accepted experiment's id when it ships a rule for this precedent."""
    if accepted is None:
        return None
    for proposal in proposals_by_rule(accepted, ws).values():
        if proposal.precedent == entry["name"] or (entry["condition"] and proposal.when == entry["condition"]):
            return accepted.id
    return None


def track(ws: "Workspace") -> dict:
    """Mine, match to the registry, update statuses and weekly counts; the registry as saved."""
    path = ws.project.data_dir / REGISTRY
    registry = _load(path)
    sessions = ws.require_sessions()
    with ws.store() as store:
        review_ts = dict(store.db.execute("SELECT session_id, ts FROM current_reviews"))
    accepted = _accepted(ws)
    stamp = {"reviewed": len(sessions), "newest_review": max((t or "" for t in review_ts.values()), default=""),
             "accepted": accepted.id if accepted else None}
    last = registry["observations"][-1] if registry["observations"] else None
    if last and {k: last.get(k) for k in stamp} == stamp:
        return registry
    observed = dict(stamp, week=week_of(stamp["newest_review"]))
    registry["observations"].append(observed)
    entries: list[dict] = registry["precedents"]
    taken: set[str] = set()
    for found in ws.mine(ws.baseline()).precedents:
        members = _members(found, sessions)
        if not members:
            continue
        ids = {s.session_id for s in members}
        entry = _match(found, ids, entries, taken)
        if entry is None:
            entry = {"id": f"P{registry['next']:04d}", "name": found.name, "source": found.source,
                     "decision": found.decision, "first_seen": observed["week"], "history": [], "status": "new"}
            registry["next"] += 1
            entries.append(entry)
            status = "new"
        else:
            before = entry["history"][-1]["overrides"] if entry["history"] else 0
            status = "growing" if len(ids) > before else "stable"
        entry.update(condition=found.condition, description=describe(found.condition) if found.condition else "",
                     sessions=sorted(ids), weekly=dict(sorted(Counter(week_of(review_ts.get(i)) for i in ids).items())),
                     proposable=not found.weak and bool(found.condition))
        entry["history"].append({"week": observed["week"], "overrides": len(ids)})
        entry["status"] = status
        taken.add(entry["id"])
    for entry in entries:
        if entry["id"] not in taken:
            entry["status"] = "not-seen"
        entry["handled_by"] = _handled(accepted, ws, entry)
        if entry["handled_by"]:
            entry["status"], entry["was_handled"] = "handled", True
        elif entry.get("was_handled"):
            entry["status"] = "regressed"
    _save(path, registry)
    return registry
