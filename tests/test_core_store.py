"""Ingesting native JSONL: idempotent, quarantining bad lines, keeping review history."""
import json

from conftest import write_jsonl
from improver.workspace import Workspace


def decision(sid, **extra):
    return {"type": "decision", "session_id": sid, "case": {"x": 1}, "decision": "approve", **extra}


def review(sid, decision="reject", ts="2026-01-01T00:00:00Z", **extra):
    return {"type": "review", "session_id": sid, "reviewer": "vera", "decision": decision, "reasoning": "no", "ts": ts, **extra}


def test_bad_lines_are_quarantined_with_file_line_and_reason_and_the_rest_is_kept(tiny_project):
    path = write_jsonl(tiny_project / "dirty.jsonl", [
        decision("S1"), '{"type": "decision", "session_id": "S2", "case": {', json.dumps({"type": "vote"}),
        json.dumps({"type": "review", "session_id": "S1"}), review("S1")])
    ws = Workspace(tiny_project)
    report = ws.ingest(str(path))
    assert (report.decisions_new, report.reviews_new, report.quarantined) == (1, 1, 3)
    with ws.store() as store:
        rows = store.quarantine()
    assert [r["line"] for r in rows] == [2, 3, 4]
    assert rows[0]["source"].endswith("dirty.jsonl") and "invalid JSON" in rows[0]["reason"]
    assert "type must be 'decision' or 'review'" in rows[1]["reason"]
    assert "decision: Field required" in rows[2]["reason"]


def test_ingesting_the_same_file_twice_stores_it_once(tiny_project):
    ws = Workspace(tiny_project)
    first = ws.ingest(str(tiny_project / "traces.jsonl"))
    second = ws.ingest(str(tiny_project / "traces.jsonl"))
    assert first.decisions_new == 80 and first.reviews_new == 80
    assert second.decisions_new == 0 and second.reviews_new == 0 and second.duplicates == 160
    with ws.store() as store:
        assert store.counts()["reviewed_sessions"] == 80


def test_latest_review_wins_and_earlier_stays_in_history(tiny_project):
    path = write_jsonl(tiny_project / "t.jsonl", [decision("S1"), review("S1", "reject", "2026-01-01"),
                                                  review("S1", "approve", "2026-02-01")])
    ws = Workspace(tiny_project)
    report = ws.ingest(str(path))
    assert report.re_reviewed_sessions == 1
    (session,) = ws.sessions
    assert session.human_decision == "approve"
    with ws.store() as store:
        assert [r["decision"] for r in store.review_history("S1")] == ["reject", "approve"]


def test_reviews_of_unknown_sessions_are_reported_and_joined_later(tiny_project):
    ws = Workspace(tiny_project)
    report = ws.ingest(str(write_jsonl(tiny_project / "r.jsonl", [review("S9")])))
    assert report.orphan_reviews == 1 and ws.sessions == []
    ws.ingest(str(write_jsonl(tiny_project / "d.jsonl", [decision("S9")])))
    assert [s.session_id for s in ws.sessions] == ["S9"]


def test_a_review_keeps_the_fingerprint_stores_written_before_gave_it(tiny_project):
    """The fingerprint is the review's identity in every store already written: the sha1 of its
    model_dump (without confidence) as sorted JSON, whatever makes it faster."""
    import hashlib
    import warnings

    from improver.models import ReviewEvent
    from improver.store import _fingerprint

    lines = (tiny_project / "traces.jsonl").read_text(encoding="utf-8").splitlines()
    reviews = [ReviewEvent.model_validate(json.loads(line)) for line in lines if '"review"' in line]
    reviews += [ReviewEvent(session_id="S1", decision="réject ✓", precedent=None, conditions=["a", "b"], confidence="high"),
                ReviewEvent(session_id="S2", decision="approve", ts="2026-01-01", inferred=True),
                ReviewEvent(session_id='S"3\\', decision="a\tb\n", reasoning="\x00 \u2028 😀", conditions=[]),
                ReviewEvent.model_construct(session_id="S4", decision="x", conditions=[1, None])]  # not strings: the encoder
    for event in reviews:
        with warnings.catch_warnings():  # pydantic warns that the constructed one's conditions are not strings
            warnings.simplefilter("ignore")
            dumped = json.dumps(event.model_dump(exclude={"confidence"}), sort_keys=True, default=str)
        assert _fingerprint(event) == hashlib.sha1(dumped.encode()).hexdigest()


def test_an_ingest_leaves_the_connection_and_the_collector_as_it_found_them(tiny_project):
    import gc

    from improver.models import DecisionEvent
    from improver.store import TraceStore

    with TraceStore(tiny_project / "t.sqlite") as store:
        settings = [store.db.execute(f"PRAGMA {name}").fetchone()[0] for name in ("synchronous", "wal_autocheckpoint")]
        store.ingest([DecisionEvent(session_id="S1", decision="approve", case={})], "t")
        assert [store.db.execute(f"PRAGMA {name}").fetchone()[0] for name in ("synchronous", "wal_autocheckpoint")] \
            == settings == [2, 1000]
        assert gc.isenabled()


def test_lists_are_stored_as_json_dumps_writes_them():
    from improver.store import _json_strings

    for items in ([], ["policy:approval-tiers", "vendor:Nimbus"], ['q"uote', "back\\slash", "tab\t", "é ✓ 😀"], ["a", 1, None]):
        assert _json_strings(items) == json.dumps(items)


def test_stored_cases_read_back_as_json_reads_them_big_integers_too(tiny_project):
    """Cases are read back by orjson where it gives json's values: a 25-digit integer stays an integer."""
    case = {"minutes": 12, "order": 1234567890123456789012345, "debt": -9223372036854775809, "ratio": 0.1}
    path = write_jsonl(tiny_project / "big.jsonl", [
        json.dumps({"type": "decision", "session_id": "B1", "case": case, "decision": "resolve"}),
        json.dumps({"type": "review", "session_id": "B1", "decision": "resolve"})])
    ws = Workspace(tiny_project)
    ws.ingest(str(path))
    [session] = [s for s in ws.sessions if s.session_id == "B1"]
    assert repr(session.case) == repr(json.loads(json.dumps(case, sort_keys=True)))  # stored with sorted keys


def test_sessions_read_the_same_whether_or_not_any_session_was_reviewed_twice(tiny_project):
    """With one review a session the store reads reviews directly (no ranking); once a session has
    a second review, the ranked current reviews: every other session reads the same either way."""
    Workspace(tiny_project).ingest(str(tiny_project / "traces.jsonl"))
    once = Workspace(tiny_project).sessions
    again = review("T003", "resolve", "2026-03-01")
    Workspace(tiny_project).ingest(str(write_jsonl(tiny_project / "again.jsonl", [again])))
    twice = Workspace(tiny_project).sessions
    assert len(once) == len(twice) == 80
    assert [s for s in twice if s.session_id != "T003"] == [s for s in once if s.session_id != "T003"]
    assert [s.human_decision for s in twice if s.session_id == "T003"] == ["resolve"]


def test_sessions_with_the_same_citations_each_get_their_own_list(tiny_project):
    """Repeated citation and condition lists are parsed once while sessions are read; each session
    still holds its own list, so changing one changes no other."""
    ws = Workspace(tiny_project)
    ws.ingest(str(tiny_project / "traces.jsonl"))
    first, second = ws.sessions[0], ws.sessions[1]
    assert first.cited == second.cited == ["policy:wait"] and first.conditions == second.conditions == []
    first.cited.append("changed")
    first.conditions.append("changed")
    assert second.cited == ["policy:wait"] and second.conditions == []


def test_a_store_opened_by_many_connections_at_once_opens_in_each_and_keeps_one_schema(tmp_path):
    """Two cycles started together both open the store: making or updating the schema is one
    transaction, so neither meets the other's half-made view (on a new store and an existing one)."""
    import threading

    from improver.store import SCHEMA_VERSION, TraceStore

    for trial in range(10):
        path = tmp_path / f"t{trial}.sqlite"
        if trial % 2:
            TraceStore(path).close()
        errors = []

        def open_the_store():
            try:
                TraceStore(path).close()
            except Exception as error:  # noqa: BLE001 - collected for the assert below
                errors.append(error)

        threads = [threading.Thread(target=open_the_store) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with TraceStore(path) as store:
            assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert store.db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'current_reviews'").fetchone()[0] == 1
