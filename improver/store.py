"""The embedded trace store: agent decisions, human reviews and quarantined input in SQLite.

Writes are idempotent (a decision is keyed by session, a review by its content
fingerprint), so ingesting the same traces twice stores them once and an interrupted
ingest can simply be run again. A session may be reviewed more than once: the latest
review is current and the earlier ones stay in its history.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from improver.errors import StoreError
from improver.models import DecisionEvent, Event, Quarantined, ReviewedSession, ReviewEvent

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    session_id TEXT PRIMARY KEY, case_json TEXT NOT NULL, decision TEXT NOT NULL,
    confidence TEXT, reasoning TEXT, cited_json TEXT, config_version TEXT, ts TEXT);
CREATE TABLE IF NOT EXISTS reviews (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, reviewer TEXT,
    decision TEXT NOT NULL, reasoning TEXT, precedent TEXT, conditions_json TEXT, ts TEXT,
    fingerprint TEXT NOT NULL UNIQUE);
CREATE INDEX IF NOT EXISTS reviews_by_session ON reviews (session_id, ts, seq);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT, line INTEGER, reason TEXT, raw TEXT,
    UNIQUE (source, line, raw));
CREATE TABLE IF NOT EXISTS cursors (source TEXT PRIMARY KEY, position TEXT NOT NULL);
CREATE VIEW IF NOT EXISTS current_reviews AS
    SELECT * FROM (SELECT *, ROW_NUMBER() OVER (
        PARTITION BY session_id ORDER BY COALESCE(ts, '') DESC, seq DESC) AS rank FROM reviews)
    WHERE rank = 1;
"""
BATCH = 5000


@dataclass
class IngestReport:
    """What one ingest did, by count."""

    source: str
    events: int = 0
    decisions_new: int = 0
    reviews_new: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_reasons: Counter = field(default_factory=Counter)
    redacted: Counter = field(default_factory=Counter)
    cleaned: Counter = field(default_factory=Counter)
    orphan_reviews: int = 0
    re_reviewed_sessions: int = 0

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        data["quarantine_reasons"] = dict(self.quarantine_reasons)
        data["redacted"] = dict(self.redacted)
        data["cleaned"] = dict(self.cleaned)
        return data


def _fingerprint(event: ReviewEvent) -> str:
    return hashlib.sha1(json.dumps(event.model_dump(), sort_keys=True, default=str).encode()).hexdigest()


class TraceStore:
    """SQLite file holding the traces of one project."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path)
            self.db.executescript(SCHEMA)
            self.db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot open trace store {self.path}: {error}; move the file aside and ingest again") from error

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "TraceStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------
    def ingest(self, items: Iterable[Event | Quarantined], source: str) -> IngestReport:
        """Store decisions, reviews and quarantined lines, a batch per transaction."""
        report = IngestReport(source=source)
        batch: list[Event | Quarantined] = []
        for item in items:
            batch.append(item)
            if len(batch) >= BATCH:
                self._write(batch, report)
                batch = []
        self._write(batch, report)
        report.orphan_reviews = self.count_orphan_reviews()
        report.re_reviewed_sessions = self.db.execute(
            "SELECT COUNT(*) FROM (SELECT session_id FROM reviews GROUP BY session_id HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        return report

    def _write(self, batch: list, report: IngestReport) -> None:
        decisions, reviews, quarantined = [], [], []
        for item in batch:
            if isinstance(item, Quarantined):
                quarantined.append((item.source, item.line, item.reason, item.raw[:10000]))
                report.quarantine_reasons[item.reason.split(":")[0]] += 1
            elif isinstance(item, DecisionEvent):
                decisions.append((item.session_id, json.dumps(item.case, sort_keys=True), item.decision,
                                  item.confidence, item.reasoning, json.dumps(item.cited), item.config_version, item.ts))
            else:
                reviews.append((item.session_id, item.reviewer, item.decision, item.reasoning, item.precedent,
                                json.dumps(item.conditions), item.ts, _fingerprint(item)))
        report.events += len(decisions) + len(reviews)
        report.quarantined += len(quarantined)
        with self.db:
            before = self.db.total_changes
            self.db.executemany(
                """INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (session_id) DO UPDATE SET case_json=excluded.case_json,
                   decision=excluded.decision, confidence=excluded.confidence, reasoning=excluded.reasoning,
                   cited_json=excluded.cited_json, config_version=excluded.config_version, ts=excluded.ts
                   WHERE COALESCE(excluded.ts, '') > COALESCE(decisions.ts, '')""",
                decisions,
            )
            changed_decisions = self.db.total_changes - before
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO reviews (session_id, reviewer, decision, reasoning, precedent,"
                " conditions_json, ts, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                reviews,
            )
            new_reviews = self.db.total_changes - before
            self.db.executemany("INSERT OR IGNORE INTO quarantine (source, line, reason, raw) VALUES (?, ?, ?, ?)",
                                quarantined)
        report.decisions_new += changed_decisions
        report.reviews_new += new_reviews
        report.duplicates += len(decisions) - changed_decisions + len(reviews) - new_reviews

    def set_cursor(self, source: str, position: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?)", (source, position))

    def cursor(self, source: str) -> str | None:
        row = self.db.execute("SELECT position FROM cursors WHERE source = ?", (source,)).fetchone()
        return row[0] if row else None

    # --- reading -------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        one = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "sessions": one("SELECT COUNT(*) FROM decisions"),
            "reviews": one("SELECT COUNT(*) FROM reviews"),
            "reviewed_sessions": one("SELECT COUNT(*) FROM current_reviews r JOIN decisions d USING (session_id)"),
            "orphan_reviews": self.count_orphan_reviews(),
            "quarantined": one("SELECT COUNT(*) FROM quarantine"),
        }

    def count_orphan_reviews(self) -> int:
        return self.db.execute(
            "SELECT COUNT(DISTINCT session_id) FROM reviews WHERE session_id NOT IN (SELECT session_id FROM decisions)"
        ).fetchone()[0]

    def reviewed_sessions(self) -> Iterator[ReviewedSession]:
        """Every session that has an agent decision and a current review, by session id."""
        rows = self.db.execute(
            """SELECT d.session_id, d.case_json, d.decision, d.confidence, d.reasoning, d.cited_json,
                      r.decision, r.reviewer, r.reasoning, r.precedent, r.conditions_json
               FROM decisions d JOIN current_reviews r USING (session_id) ORDER BY d.session_id"""
        )
        for row in rows:
            yield ReviewedSession(
                session_id=row[0], case=json.loads(row[1]), agent_decision=row[2], agent_confidence=row[3],
                agent_reasoning=row[4] or "", cited=json.loads(row[5] or "[]"), human_decision=row[6],
                reviewer=row[7] or "unknown", human_reasoning=row[8] or "", precedent=row[9] or None,
                conditions=json.loads(row[10] or "[]"),
            )

    def review_history(self, session_id: str) -> list[dict]:
        rows = self.db.execute(
            "SELECT reviewer, decision, reasoning, precedent, conditions_json, ts FROM reviews"
            " WHERE session_id = ? ORDER BY COALESCE(ts, ''), seq", (session_id,))
        keys = ("reviewer", "decision", "reasoning", "precedent", "conditions", "ts")
        return [dict(zip(keys, (*row[:4], json.loads(row[4] or "[]"), row[5]))) for row in rows]

    def quarantine(self, limit: int = 100) -> list[dict]:
        rows = self.db.execute("SELECT source, line, reason, raw FROM quarantine ORDER BY id LIMIT ?", (limit,))
        return [dict(zip(("source", "line", "reason", "raw"), row)) for row in rows]
