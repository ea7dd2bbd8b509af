"""The embedded trace store: agent decisions, human reviews and quarantined input in SQLite.

Writes are idempotent (a decision is keyed by session, a review by its content
fingerprint), so ingesting the same traces twice stores them once and an interrupted
ingest can simply be run again. A session may be reviewed more than once: the latest
review is current and the earlier ones stay in its history. Likewise a session may get
conflicting decisions (different decision records for one session id): the loop uses the
one with the latest ``ts`` (on equal or missing ``ts``, the one stored first stays), every
version is kept in ``decision_history``, and the ingest report counts and names them.
"""
from __future__ import annotations

import gc
import hashlib
import json
import sqlite3
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import orjson

from improver.errors import StoreError
from improver.models import DecisionEvent, Event, Quarantined, ReviewedSession, ReviewEvent
from improver.sources import json_loads as _loads

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    session_id TEXT PRIMARY KEY, case_json TEXT NOT NULL, decision TEXT NOT NULL,
    confidence TEXT, reasoning TEXT, cited_json TEXT, config_version TEXT, ts TEXT);
CREATE TABLE IF NOT EXISTS decision_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, case_json TEXT NOT NULL, decision TEXT NOT NULL,
    confidence TEXT, reasoning TEXT, cited_json TEXT, config_version TEXT, ts TEXT, fingerprint TEXT NOT NULL UNIQUE);
CREATE INDEX IF NOT EXISTS decision_history_by_session ON decision_history (session_id);
CREATE TABLE IF NOT EXISTS reviews (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, reviewer TEXT,
    decision TEXT NOT NULL, reasoning TEXT, precedent TEXT, conditions_json TEXT, ts TEXT,
    fingerprint TEXT NOT NULL UNIQUE, inferred INTEGER NOT NULL DEFAULT 0, confidence TEXT);
CREATE INDEX IF NOT EXISTS reviews_by_session ON reviews (session_id, ts, seq);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT, line INTEGER, reason TEXT, raw TEXT,
    UNIQUE (source, line, raw));
CREATE TABLE IF NOT EXISTS cursors (source TEXT PRIMARY KEY, position TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spans (span_id TEXT PRIMARY KEY, session_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS waiting (
    id INTEGER PRIMARY KEY AUTOINCREMENT, span_id TEXT NOT NULL, source TEXT, line INTEGER, record TEXT NOT NULL,
    UNIQUE (span_id, record));
"""
# Made after the columns of stores from before are added. The index finds the reviews inferred from
# spans (none unless a span source inferred one); in the view, a review read from a reviewer's
# annotation wins over one inferred from a span, then the latest wins.
CURRENT_REVIEWS = """
CREATE INDEX IF NOT EXISTS inferred_reviews ON reviews (session_id) WHERE inferred = 1;
DROP VIEW IF EXISTS current_reviews;
CREATE VIEW current_reviews AS
    SELECT * FROM (SELECT *, ROW_NUMBER() OVER (
        PARTITION BY session_id ORDER BY inferred, COALESCE(ts, '') DESC, seq DESC) AS rank FROM reviews)
    WHERE rank = 1;
"""
WAL_TRIES = 100  # 5 s, SQLite's own busy wait
SCHEMA_VERSION = 1  # PRAGMA user_version of a store whose schema is this one; raise it with the schema
LOOKUP = 500  # ids per IN (...) query
BATCH = 5000
DECISION_COLUMNS = "session_id, case_json, decision, confidence, reasoning, cited_json, config_version, ts"
SHOWN = 20  # conflicting sessions named in a report


@dataclass
class IngestReport:
    """What one ingest did, by count; every row read and every event is accounted for."""

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
    rows_read: int = 0  # rows_read = rows_joined + rows_ignored + rows_waiting + quarantined
    rows_joined: int = 0
    rows_ignored: Counter = field(default_factory=Counter)
    rows_waiting: int = 0
    waiting_joined: int = 0  # annotations stored by an earlier ingest that met their span in this one
    waiting_total: int = 0  # annotations in the store still waiting for their span, after this ingest
    waiting_for: list = field(default_factory=list)  # a sample of the spans (or sessions) they wait for
    conflicting_decisions: int = 0  # events = decisions_new + conflicting_decisions + reviews_new + duplicates
    conflicting_sessions: list[str] = field(default_factory=list)  # the first SHOWN of them

    @property
    def stored(self) -> int:
        return self.decisions_new + self.conflicting_decisions + self.reviews_new

    @property
    def unaccounted(self) -> int:
        """Events neither stored nor known as duplicates (0 unless there is a bug)."""
        return self.events - self.stored - self.duplicates

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        for key in ("quarantine_reasons", "redacted", "cleaned", "rows_ignored"):
            data[key] = dict(data[key])
        data["stored"], data["unaccounted"] = self.stored, self.unaccounted
        return data

    def accounted(self) -> bool:
        """Every row read is joined into an event, ignored with a reason, waiting or quarantined."""
        return self.rows_read == self.rows_joined + sum(self.rows_ignored.values()) + self.rows_waiting + self.quarantined


MAX_PARSED_LISTS = 100_000  # distinct citation and condition lists remembered while sessions are read
MAX_SHARED_TEXTS = 1_000_000  # distinct short texts shared while sessions are read
SHARED_TEXT_LENGTH = 200  # texts up to this long are shared (longer ones are mostly one a session)
SHARED_SAMPLE = 1000  # sessions read before the fields whose texts mostly differ are no longer shared


def _mostly_distinct(cases: list[dict]) -> set:
    """The top-level fields of these cases whose string values are mostly all different (an id)."""
    values: dict[str, list] = {}
    for case in cases:
        for key, value in case.items():
            if type(value) is str:
                values.setdefault(key, []).append(value)
    return {key for key, found in values.items() if len(set(found)) > len(cases) // 2}


_SORTED_JSON = json.JSONEncoder(sort_keys=True).encode  # made once: json.dumps(..., sort_keys=True) makes one a call
_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, default=str).encode
_STRING = json.encoder.encode_basestring_ascii  # a str as json.dumps writes it


def _json_strings(items: list) -> str:
    """``json.dumps(items)``, the same text, written directly for a list of strings (the encoder's
    set-up is most of what json.dumps costs on a short list)."""
    try:
        return "[" + ", ".join(map(_STRING, items)) + "]"
    except TypeError:  # not all strings
        return json.dumps(items)


def _fingerprint(event: ReviewEvent) -> str:
    """A review's identity: the sha1 of its ``model_dump`` as sorted JSON, without its confidence (reviews
    stored before it was read keep theirs). The JSON is written field by field, for speed; a test pins it."""
    try:
        text = (f'{{"conditions": {_json_strings(event.conditions)}, "decision": {_STRING(event.decision)}, '
                f'"precedent": {"null" if event.precedent is None else _STRING(event.precedent)}, '
                f'"reasoning": {_STRING(event.reasoning)}, "reviewer": {_STRING(event.reviewer)}, '
                f'"session_id": {_STRING(event.session_id)}, "ts": {"null" if event.ts is None else _STRING(event.ts)}, '
                f'"type": {_STRING(event.type)}}}')
    except TypeError:  # a value that is not a string: the general encoder
        text = _FINGERPRINT_JSON({name: getattr(event, name) for name in (
            "type", "session_id", "reviewer", "decision", "reasoning", "precedent", "conditions", "ts")})
    return hashlib.sha1(text.encode()).hexdigest()


def _with_fingerprint(row: tuple) -> tuple:
    """A decision row (DECISION_COLUMNS) and the fingerprint of its content."""
    return (*row, hashlib.sha1(json.dumps(row).encode()).hexdigest())


BatchRows = tuple[list[tuple], list[tuple], list[tuple]]  # a batch's decision, review and quarantine rows


def batched(items: Iterable) -> Iterator[list]:
    """The items in lists of ``BATCH`` (the last one shorter; one empty list when there are none)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    yield batch


def batch_rows(batch: list[Event | Quarantined]) -> BatchRows:
    """A batch of events and quarantined lines as the rows ``TraceStore`` writes: plain tuples of
    strings and numbers, so another process can make them (``sources.native_worker``)."""
    decisions, reviews, quarantined = [], [], []
    for item in batch:
        if isinstance(item, Quarantined):
            quarantined.append((item.source, item.line, item.reason, item.raw[:10000]))
        elif isinstance(item, DecisionEvent):
            decisions.append((item.session_id, _SORTED_JSON(item.case), item.decision,
                              item.confidence, item.reasoning, _json_strings(item.cited), item.config_version, item.ts))
        else:
            reviews.append((item.session_id, item.reviewer, item.decision, item.reasoning, item.precedent,
                            _json_strings(item.conditions), item.ts, _fingerprint(item), int(item.inferred), item.confidence))
    return decisions, reviews, quarantined


class TraceStore:
    """SQLite file holding the traces of one project."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path)
            if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._make_schema()
            self._use_wal()
        except sqlite3.DatabaseError as error:
            if "locked" in str(error):
                raise StoreError(f"trace store {self.path} is locked by another improver process; run this again "
                                 "when it finishes") from error
            raise StoreError(f"cannot open trace store {self.path}: {error}; move the file aside and ingest again") from error

    def _use_wal(self) -> None:
        """Switch a new store to WAL (the mode stays with the file). The switch takes no busy wait
        of SQLite's own, and a second process making the same new store holds it off for a moment."""
        for attempt in range(WAL_TRIES):
            try:
                if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == WAL_TRIES - 1:
                    raise
                time.sleep(0.05)

    def _make_schema(self) -> None:
        """Make the tables, or bring those of an older store up to date, in one transaction: a
        second process opening the store at the same time waits, then finds the schema made."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                for statement in filter(str.strip, SCHEMA.split(";")):
                    self.db.execute(statement)
                columns = {row[1] for row in self.db.execute("PRAGMA table_info(reviews)")}
                for name, kind in (("inferred", "INTEGER NOT NULL DEFAULT 0"), ("confidence", "TEXT")):  # stores from before
                    if name not in columns:
                        self.db.execute(f"ALTER TABLE reviews ADD COLUMN {name} {kind}")
                for statement in filter(str.strip, CURRENT_REVIEWS.split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "TraceStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------
    def ingest(self, items: Iterable[Event | Quarantined], source: str) -> IngestReport:
        """Store decisions, reviews and quarantined lines, a batch per transaction."""
        return self.ingest_rows(map(batch_rows, batched(items)), source)

    def ingest_rows(self, batches: Iterable[BatchRows], source: str) -> IngestReport:
        """``ingest`` of batches already turned into rows (``batch_rows``, maybe in another process)."""
        report = IngestReport(source=source)
        with self._bulk_write():
            for rows in batches:
                self._write(rows, report)
                gc.collect(1)  # what a source left in cycles (rare) goes with each batch
        report.conflicting_sessions = sorted(report.conflicting_sessions)
        report.orphan_reviews = self.count_orphan_reviews()
        report.re_reviewed_sessions = self.db.execute(
            "SELECT COUNT(*) FROM (SELECT session_id FROM reviews GROUP BY session_id HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        return report

    @contextmanager
    def _bulk_write(self) -> Iterator[None]:
        """Settings for writing many batches, restored after.

        In WAL mode, synchronous=NORMAL commits a batch without waiting for the disk (a checkpoint
        still does). A crash of improver loses nothing committed; a power cut may lose the last
        batches, but never corrupts the store or keeps a later commit without an earlier one (so
        no cursor without its events), and ingesting again stores them. The WAL is copied into the
        store every ~80 MB instead of every ~4 MB, so a few checkpoints wait for the disk, not one
        a batch. Events hold no reference cycles, so the cyclic collector is paused: refcounts
        free them and no collector pass rescans a batch."""
        synchronous = self.db.execute("PRAGMA synchronous").fetchone()[0]
        checkpoint = self.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        collecting = gc.isenabled()
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA wal_autocheckpoint=20000")
        gc.disable()
        try:
            yield
        finally:
            if collecting:
                gc.enable()
            self.db.execute(f"PRAGMA synchronous={int(synchronous)}")
            self.db.execute(f"PRAGMA wal_autocheckpoint={int(checkpoint)}")

    def _write(self, rows: BatchRows, report: IngestReport) -> None:
        decisions, reviews, quarantined = rows
        for row in quarantined:
            report.quarantine_reasons[row[2].split(":")[0]] += 1
        report.events += len(decisions) + len(reviews)
        report.quarantined += len(quarantined)
        with self.db:
            self._classify(decisions, report)
            self.db.executemany(
                """INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (session_id) DO UPDATE SET case_json=excluded.case_json,
                   decision=excluded.decision, confidence=excluded.confidence, reasoning=excluded.reasoning,
                   cited_json=excluded.cited_json, config_version=excluded.config_version, ts=excluded.ts
                   WHERE COALESCE(excluded.ts, '') > COALESCE(decisions.ts, '')""",
                decisions,
            )
            before = self.db.total_changes
            insert = "INSERT OR IGNORE INTO reviews (session_id, reviewer, decision, reasoning, precedent," \
                     " conditions_json, ts, fingerprint, inferred, confidence)"
            if any(row[8] for row in reviews):  # a review inferred from a span is not kept once a reviewer's own review is
                self.db.executemany(f"{insert} SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE NOT (?9 AND EXISTS"
                                    " (SELECT 1 FROM reviews WHERE session_id = ?1 AND inferred = 0))", reviews)
            else:
                self.db.executemany(f"{insert} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", reviews)
            new_reviews = self.db.total_changes - before
            self.db.executemany("UPDATE reviews SET confidence = ? WHERE fingerprint = ? AND confidence IS NULL",
                                [(row[9], row[7]) for row in reviews if row[9] is not None])  # read since it was stored
            self.db.execute("DELETE FROM reviews WHERE inferred = 1 AND session_id IN (SELECT value FROM json_each(?))",
                            (json.dumps([row[0] for row in reviews if not row[8]]),))  # stand-ins, now replaced
            self.db.executemany("INSERT OR IGNORE INTO quarantine (source, line, reason, raw) VALUES (?, ?, ?, ?)",
                                quarantined)
        report.reviews_new += new_reviews
        report.duplicates += len(reviews) - new_reviews

    def _classify(self, decisions: list[tuple], report: IngestReport) -> None:
        """Count decision rows as new, duplicate or conflicting (a different one is stored for the
        session); a conflict puts both versions into decision_history. Which one is current is the
        upsert's rule in ``_write``: the latest ``ts``, on a tie the one stored first."""
        ids = json.dumps(sorted({row[0] for row in decisions}))
        current = {row[0]: row for row in self.db.execute(
            f"SELECT {DECISION_COLUMNS} FROM decisions WHERE session_id IN (SELECT value FROM json_each(?))", (ids,))}
        known = {row[0] for row in self.db.execute(
            "SELECT fingerprint FROM decision_history WHERE session_id IN (SELECT value FROM json_each(?))", (ids,))}
        history = []
        for row in decisions:
            stored = current.get(row[0])
            if stored is None:
                report.decisions_new += 1
                current[row[0]] = row
                continue
            version = _with_fingerprint(row)
            if stored == row or version[-1] in known:
                report.duplicates += 1
                continue
            for new in (_with_fingerprint(stored), version):
                if new[-1] not in known:
                    known.add(new[-1])
                    history.append(new)
            report.conflicting_decisions += 1
            if row[0] not in report.conflicting_sessions and len(report.conflicting_sessions) < SHOWN:
                report.conflicting_sessions.append(row[0])
            if (row[7] or "") > (stored[7] or ""):
                current[row[0]] = row
        self.db.executemany(
            f"INSERT OR IGNORE INTO decision_history ({DECISION_COLUMNS}, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            history)

    def set_cursor(self, source: str, position: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?)", (source, position))

    def cursor(self, source: str) -> str | None:
        row = self.db.execute("SELECT position FROM cursors WHERE source = ?", (source,)).fetchone()
        return row[0] if row else None

    # --- spans and the annotations waiting for them ----------------------------------
    def span_sessions(self, span_ids: list[str]) -> dict[str, str]:
        """The session of each of these spans that an earlier ingest stored."""
        found: dict[str, str] = {}
        for start in range(0, len(span_ids), LOOKUP):
            chunk = span_ids[start:start + LOOKUP]
            found.update(self.db.execute(f"SELECT span_id, session_id FROM spans WHERE span_id IN "
                                         f"({','.join('?' * len(chunk))})", chunk).fetchall())
        return found

    def waiting_for(self, span_ids) -> list[tuple[str, str, int, dict]]:
        """Annotations waiting for any of these spans: (span id, source, line, annotation)."""
        waiting = {row[0] for row in self.db.execute("SELECT DISTINCT span_id FROM waiting")}
        wanted = [s for s in waiting if s in span_ids]
        rows = []
        for start in range(0, len(wanted), LOOKUP):
            chunk = wanted[start:start + LOOKUP]
            rows += self.db.execute(f"SELECT span_id, source, line, record FROM waiting WHERE span_id IN "
                                    f"({','.join('?' * len(chunk))}) ORDER BY id", chunk).fetchall()
        return [(span_id, source, line, json.loads(record)) for span_id, source, line, record in rows]

    def add_spans(self, spans: dict[str, str], waiting: list[tuple[str, str, int, dict]]) -> None:
        """Remember spans (span id -> session) for later annotations, drop the annotations that met
        their span, and keep the ones still waiting."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO spans VALUES (?, ?)", spans.items())
            self.db.execute("DELETE FROM waiting WHERE span_id IN (SELECT span_id FROM spans)")
            self.db.executemany("INSERT OR IGNORE INTO waiting (span_id, source, line, record) VALUES (?, ?, ?, ?)",
                                [(s, source, line, json.dumps(r, sort_keys=True, default=str))
                                 for s, source, line, r in waiting])

    def waiting_summary(self, sample: int = 10) -> tuple[int, list[str]]:
        """How many annotations wait for a span, and (a sample of) the sessions or spans they wait for."""
        total = self.db.execute("SELECT COUNT(*) FROM waiting").fetchone()[0]
        hints = []
        for span_id, record in self.db.execute("SELECT span_id, record FROM waiting ORDER BY id LIMIT ?", (sample * 4,)):
            session = json.loads(record).get("session_id")
            hint = f"session {session}" if session else f"span {span_id}"
            if hint not in hints:
                hints.append(hint)
        return total, hints[:sample]

    # --- reading -------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        one = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "sessions": one("SELECT COUNT(*) FROM decisions"),
            "reviews": self.review_count(),
            "reviewed_sessions": one("SELECT COUNT(*) FROM current_reviews r JOIN decisions d USING (session_id)"),
            "orphan_reviews": self.count_orphan_reviews(),
            "quarantined": one("SELECT COUNT(*) FROM quarantine"),
            "waiting_annotations": one("SELECT COUNT(*) FROM waiting"),
        }

    def review_count(self) -> int:
        """Reviews stored (a quick bound on the reviewed sessions, which ``counts`` gives exactly)."""
        return self.db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]

    def count_orphan_reviews(self) -> int:
        return self.db.execute(
            "SELECT COUNT(DISTINCT session_id) FROM reviews WHERE session_id NOT IN (SELECT session_id FROM decisions)"
        ).fetchone()[0]

    def reviewed_sessions(self, digest=None) -> Iterator[ReviewedSession]:
        """Every session that has an agent decision and a current review, by session id; ``digest`` (a
        hashlib object), when given, is updated with each session's row as stored."""
        re_reviewed = self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM reviews GROUP BY session_id HAVING COUNT(*) > 1)").fetchone()[0]
        reviews = "current_reviews" if re_reviewed else "reviews"  # one review a session: it is the current one (3x faster)
        rows = self.db.execute(
            f"""SELECT d.session_id, d.case_json, d.decision, d.confidence, d.reasoning, d.cited_json,
                      r.decision, r.reviewer, r.reasoning, r.precedent, r.conditions_json, r.confidence
               FROM decisions d JOIN {reviews} r USING (session_id) ORDER BY d.session_id"""
        )
        parsed: dict[str | None, list[str]] = {}  # citation and condition lists repeat: each text parsed once

        def strings(text: str | None) -> list[str]:
            found = parsed.get(text)
            if found is None:
                found = _loads(text or "[]")
                if len(parsed) < MAX_PARSED_LISTS:
                    parsed[text] = found
            return list(found)  # each session its own list (of strings: a copy shares nothing)

        # Equal short texts (a field's values, decisions, reviewers) as one object: each column pass of
        # the stages after (factorising, counting, comparing) then reads a few objects, not one a row
        # scattered over memory, and finds each one's hash already made (3-10x faster a pass at 100k).
        # Fields whose texts mostly differ in the first SHARED_SAMPLE sessions (an id) are left as they are.
        texts: dict[str, str] = {}
        one = texts.setdefault
        sample: list[dict] = []
        alone: set = set()

        def shared(value):
            return one(value, value) if type(value) is str and len(value) <= SHARED_TEXT_LENGTH else value

        for row in rows:
            if digest is not None:
                digest.update(orjson.dumps(row))
            case = _loads(row[1])
            if type(case) is dict:
                for key, value in case.items():
                    if type(value) is str and key not in alone and len(value) <= SHARED_TEXT_LENGTH:
                        case[key] = one(value, value)
                if sample is not None:
                    sample.append(case)
                    if len(sample) == SHARED_SAMPLE:
                        alone, sample = _mostly_distinct(sample), None
            if len(texts) > MAX_SHARED_TEXTS:
                texts.clear()
            agent, human = row[2], row[6]  # never null
            yield ReviewedSession(
                session_id=row[0], case=case, agent_decision=one(agent, agent), agent_confidence=shared(row[3]),
                agent_reasoning=row[4] or "", cited=strings(row[5]), human_decision=one(human, human),
                reviewer=shared(row[7] or "unknown"), human_reasoning=row[8] or "", precedent=shared(row[9] or None),
                conditions=strings(row[10]), human_confidence=shared(row[11]),
            )

    def review_history(self, session_id: str) -> list[dict]:
        rows = self.db.execute(
            "SELECT reviewer, decision, reasoning, precedent, conditions_json, ts, confidence FROM reviews"
            " WHERE session_id = ? ORDER BY COALESCE(ts, ''), seq", (session_id,))
        keys = ("reviewer", "decision", "reasoning", "precedent", "conditions", "ts", "confidence")
        return [dict(zip(keys, (*row[:4], json.loads(row[4] or "[]"), *row[5:]))) for row in rows]

    def decision_history(self, session_id: str) -> list[dict]:
        """Every decision stored for a session, in the order stored (the current one is in ``decisions``)."""
        rows = self.db.execute(f"SELECT {DECISION_COLUMNS} FROM decision_history WHERE session_id = ? ORDER BY seq",
                               (session_id,)).fetchall() or self.db.execute(
            f"SELECT {DECISION_COLUMNS} FROM decisions WHERE session_id = ?", (session_id,)).fetchall()
        keys = ("session_id", "case", "decision", "confidence", "reasoning", "cited", "config_version", "ts")
        return [dict(zip(keys, (row[0], json.loads(row[1]), *row[2:5], json.loads(row[5] or "[]"), *row[6:])))
                for row in rows]

    def quarantine(self, limit: int = 100) -> list[dict]:
        rows = self.db.execute("SELECT source, line, reason, raw FROM quarantine ORDER BY id LIMIT ?", (limit,))
        return [dict(zip(("source", "line", "reason", "raw"), row)) for row in rows]
