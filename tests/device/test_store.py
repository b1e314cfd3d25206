"""The utterance log: round trip, reading order, queries, deletion that leaves no bytes behind, migrations,
and one writer with a concurrent reader."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
from datetime import date, timedelta
from pathlib import Path

import pytest

from assistant_forget.device import store as store_module
from assistant_forget.core.errors import BadInput, CorruptFile, DeviceBusy
from assistant_forget.device.localtime import localize, utc_micros
from assistant_forget.device.store import LogStore, Utterance, latest_version
from scan import find_texts, snapshot

INTENTS = ["alarm", "weather", "timer", "calendar", "reminder"]


def utt(text: str, timestamp: str, tz: str = "America/New_York", uid: str | None = None,
        intent: str = "alarm", source: str = "test") -> Utterance:
    c = localize(timestamp, tz)
    uid = "u" + hashlib.sha256(f"{timestamp}|{text}".encode()).hexdigest()[:12] if uid is None else uid
    return Utterance(uid, text, intent, c.utc, c.tz, c.local_date, source)


def synthetic_log(days: int, per_day: int, start: date = date(2026, 1, 1)) -> list[Utterance]:
    """Distinctive texts (each carries a unique token), spread over `days` days in two zones."""
    rows = []
    for d in range(days):
        day = start + timedelta(days=d)
        tz, offset = ("Europe/Berlin", "+01:00") if d % 2 else ("Asia/Tokyo", "+09:00")
        for i in range(per_day):
            token = hashlib.sha256(f"{d}-{i}".encode()).hexdigest()[:10]
            text = f"Erinnere mich an Grüße {token} Nummer {i}" if i % 3 == 0 else f"remind me of zq{token} item {i}"
            ts = f"{day.isoformat()}T{6 + i * 17 // per_day:02d}:{(i * 7) % 60:02d}:00{offset}"
            rows.append(utt(text, ts, tz, uid=f"d{d}-{i}", intent=INTENTS[i % len(INTENTS)]))
    return rows


def reference_order(rows: list[Utterance]) -> list[Utterance]:
    """Obviously correct reading order: local date, then instant, then text, then id."""
    return sorted(rows, key=lambda u: (date.fromisoformat(u.local_date), utc_micros(u.utc), u.text, u.id))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "dev" / "logs.sqlite"


@pytest.fixture(autouse=True)
def _mkdir(db: Path) -> None:
    db.parent.mkdir()


def test_round_trip_keeps_every_field(db: Path) -> None:
    rows = [utt("Wake me at 7 ☀️", "2026-03-03T23:30:00-05:00", uid="a", intent="alarm", source="import"),
            utt("ÉTÉ à Paris: quel temps?", "2026-03-04T09:00:00.123456+01:00", "Europe/Paris", uid="b",
                intent="weather"),
            utt("set a timer", "2026-03-04T10:00:00+05:30", "+05:30", uid="c", intent="timer")]
    with LogStore(db) as s:
        assert s.add(rows) == 3
    with LogStore(db, readonly=True) as s:
        assert s.all() == reference_order(rows)
        assert s.count() == 3
        assert s.by_ids(["c", "a", "nope"]) == reference_order([rows[0], rows[2]])
        assert s.existing_ids(["a", "zz"]) == {"a"}


def test_reading_order_does_not_depend_on_insertion_order(tmp_path: Path, db: Path) -> None:
    rows = synthetic_log(days=4, per_day=12)
    # ties on the instant are broken by text, then id
    rows += [utt("same time b", "2026-01-02T07:00:00+01:00", "Europe/Berlin", uid="t2"),
             utt("same time a", "2026-01-02T07:00:00+01:00", "Europe/Berlin", uid="t3"),
             utt("same time a", "2026-01-02T07:00:00+01:00", "Europe/Berlin", uid="t1")]
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    other = tmp_path / "other.sqlite"
    with LogStore(db) as a, LogStore(other) as b:
        a.add(rows)
        b.add(shuffled)
        assert a.all() == b.all() == reference_order(rows)
        assert [u.id for u in a.by_day("2026-01-02") if u.id[0] == "t"] == ["t1", "t3", "t2"]


def test_day_and_range_queries(db: Path) -> None:
    rows = synthetic_log(days=5, per_day=6)
    with LogStore(db) as s:
        s.add(rows)
        assert s.day_counts() == {f"2026-01-0{d}": 6 for d in range(1, 6)}
        assert list(s.day_counts()) == sorted(s.day_counts())
        assert s.by_day("2026-01-03") == reference_order([u for u in rows if u.local_date == "2026-01-03"])
        assert s.by_day(date(2026, 1, 3)) == s.by_day("2026-01-03")
        assert s.by_range("2026-01-02", "2026-01-04") == reference_order(
            [u for u in rows if "2026-01-02" <= u.local_date <= "2026-01-04"])
        assert s.before("2026-01-03") == reference_order([u for u in rows if u.local_date < "2026-01-03"])
        assert s.by_day("2026-02-01") == []
        with pytest.raises(BadInput, match="start is after the end"):
            s.by_range("2026-01-04", "2026-01-02")
        with pytest.raises(BadInput, match="YYYY-MM-DD"):
            s.by_day("Jan 3")


def test_text_match_is_unicode_case_insensitive_and_literal(db: Path) -> None:
    rows = [utt("Dinner at the ÉCOLE", "2026-03-03T18:00:00-05:00", uid="1"),
            utt("Gruß an die STRASSE", "2026-03-03T18:01:00-05:00", uid="2"),
            utt("I'm 100% sure", "2026-03-03T18:02:00-05:00", uid="3"),
            utt("100 percent", "2026-03-03T18:03:00-05:00", uid="4"),
            utt("under_score", "2026-03-03T18:04:00-05:00", uid="5")]
    with LogStore(db) as s:
        s.add(rows)
        assert [u.id for u in s.matching("école")] == ["1"]  # SQLite's LIKE folds ASCII only
        assert [u.id for u in s.matching("straße")] == ["2"]
        assert [u.id for u in s.matching("100%")] == ["3"]  # % and _ are not wildcards
        assert [u.id for u in s.matching("d_r")] == [] and [u.id for u in s.matching("R_S")] == ["5"]
        assert s.matching("'; DROP TABLE utterances; --") == []
        assert s.count() == 5
        for needle in ["", "   "]:
            with pytest.raises(BadInput, match="would match every utterance"):
                s.matching(needle)


def test_add_is_all_or_nothing(db: Path) -> None:
    good = utt("fine", "2026-03-03T12:00:00-05:00", uid="g")
    with LogStore(db) as s:
        s.add([good])
        wrong_day = Utterance("w", "x", "alarm", good.utc, good.tz, "2026-03-04", "test")
        cases = [([utt("a", "2026-03-03T13:00:00-05:00", uid="g")], "already in the store"),
                 ([utt("a", "2026-03-03T13:00:00-05:00", uid="d"), utt("b", "2026-03-03T14:00:00-05:00", uid="d")],
                  "'d' appears 2 times"),
                 ([utt("a", "2026-03-03T13:00:00-05:00", uid="n", intent="alarms")], "did you mean 'alarm'"),
                 ([wrong_day], "'2026-03-04' is not the date in America/New_York"),
                 ([utt("a\x00b", "2026-03-03T13:00:00-05:00", uid="z")], "NUL"),
                 ([utt("ok", "2026-03-03T13:00:00-05:00", uid="")], "id: is empty")]
        for batch, message in cases:
            with pytest.raises(BadInput, match=message):
                s.add([utt("innocent", "2026-03-03T15:00:00-05:00", uid="i")] + batch)
            assert s.all() == [good]


def test_add_refuses_a_local_date_after_the_latest_date_on_earth(db: Path) -> None:
    """The bound `forget --date` uses (localtime.latest_local_date): every stored day can be forgotten."""
    from datetime import datetime, timedelta, timezone

    from assistant_forget.device.localtime import latest_local_date
    kiritimati = datetime.now(timezone(timedelta(hours=14)))
    today_there = utt("now in Kiritimati", kiritimati.isoformat(timespec="seconds"), "Pacific/Kiritimati", uid="k")
    assert today_there.local_date == latest_local_date().isoformat()
    with LogStore(db) as s:
        assert s.add([today_there]) == 1
        for row in (utt("far", "2999-06-01T10:00:00+00:00", "UTC", uid="f"),
                    utt("tomorrow", (kiritimati + timedelta(days=1)).isoformat(timespec="seconds"),
                        "Pacific/Kiritimati", uid="t")):
            with pytest.raises(BadInput, match=r"local_date: local date \d{4}-\d\d-\d\d is in the future \(the latest "
                                               r"date anywhere now is \d{4}-\d\d-\d\d\)"):
                s.add([row])
        assert [u.id for u in s.all()] == ["k"]


def test_deletions_by_each_selector(db: Path) -> None:
    rows = synthetic_log(days=6, per_day=5)
    with LogStore(db) as s:
        s.add(rows)
        assert s.delete_day("2026-01-02") == 5
        assert s.delete_range("2026-01-04", "2026-01-05") == 10
        assert s.delete_ids(["d0-1", "d0-2", "missing"]) == 2
        assert s.delete_matching("GRÜSSE", purge=False) == 6  # 3 days left, each with i = 0, 3 saying "Grüße"
        s.purge()
        left = [u for u in rows if u.local_date in ("2026-01-01", "2026-01-03", "2026-01-06")
                and u.id not in ("d0-1", "d0-2") and "Grüße" not in u.text]
        assert s.all() == reference_order(left)
        assert s.delete_day("2026-01-02") == 0


def test_deleted_day_leaves_no_bytes_in_any_file(db: Path) -> None:
    rows = synthetic_log(days=40, per_day=30)  # 1,200 utterances
    victims = [u.text for u in rows if u.local_date == "2026-01-07"]
    survivors = [u.text for u in rows if u.local_date == "2026-01-08"]
    with LogStore(db) as s:
        s.add(rows)
        assert set(find_texts(db.parent, victims)) == set(victims)  # the scan can see them
        assert s.delete_day("2026-01-07", purge=False) == 30
        assert find_texts(db.parent, victims) != {}  # deleted rows linger until purged
        s.purge()
        assert find_texts(db.parent, victims) == {}
        assert set(find_texts(db.parent, survivors)) == set(survivors)
        assert (db.parent / "logs.sqlite-wal").stat().st_size == 0
        span = [u.text for u in rows if "2026-01-10" <= u.local_date <= "2026-01-25"]
        assert s.delete_range("2026-01-10", "2026-01-25") == len(span) == 16 * 30  # frees whole pages
    assert find_texts(db.parent, victims + span) == {}
    assert sorted(p.name for p in db.parent.iterdir()) == ["logs.sqlite"]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA freelist_count").fetchone() == (0,)  # VACUUM left no free pages behind
    conn.close()


def test_secure_delete_zeroes_deleted_text_before_any_purge(db: Path) -> None:
    """Without the purge's VACUUM, `secure_delete` alone keeps a deleted text out of the files: the pages the
    delete writes to the WAL hold zeros where its cells were, and a checkpoint copies them over the old ones."""
    rows = synthetic_log(days=4, per_day=20)
    victims = [u for u in rows if u.local_date == "2026-01-02"][::3] + [u for u in rows if u.local_date == "2026-01-03"]
    said = [u.text for u in victims]
    survivors = [u.text for u in rows if u not in victims]
    wal = db.with_name(db.name + "-wal")
    with LogStore(db) as s:
        s.add(rows)
        s.purge()  # every row is in the main file; the WAL is empty
        assert wal.stat().st_size == 0 and set(find_texts(db.parent, said)) == set(said)
        assert s.delete_ids([u.id for u in victims], purge=False) == len(victims)
        assert wal.stat().st_size > 0  # the delete's pages: in the WAL, not checkpointed, nothing vacuumed
        held = lambda path: [t for t in said if t.encode() in path.read_bytes()]  # noqa: E731
        assert held(db) == said  # the main file still has the old pages (so the scan can see them) ...
        assert held(wal) == []  # ... but the new versions were zeroed where the rows were
        other = sqlite3.connect(db)
        assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # a checkpoint, no VACUUM
        other.close()
        assert find_texts(db.parent, said) == {}  # main file, WAL, shared memory
        assert set(find_texts(db.parent, survivors)) == set(survivors)
        assert s.count() == len(rows) - len(victims)


def test_several_selectors_then_one_purge_leave_no_bytes(db: Path) -> None:
    rows = synthetic_log(days=10, per_day=20)
    with LogStore(db) as s:
        s.add(rows)
        by_id = [u for u in rows if u.local_date == "2026-01-03"][::4]
        by_text = [u for u in rows if "zq" in u.text and u.local_date == "2026-01-05"][:3]
        s.delete_ids([u.id for u in by_id], purge=False)
        for u in by_text:
            s.delete_matching(u.text.upper(), purge=False)
        s.purge()
        gone = [u.text for u in by_id + by_text]
        assert find_texts(db.parent, gone) == {}
        assert s.count() == len(rows) - len(gone)


def test_readonly_never_writes(tmp_path: Path, db: Path) -> None:
    with LogStore(tmp_path / "dev" / "absent.sqlite", readonly=True) as s:
        assert s.day_counts() == {} and s.all() == []
    assert list(db.parent.iterdir()) == []  # a missing store is not created
    with LogStore(db) as s:
        s.add([utt("hello", "2026-03-03T12:00:00-05:00")])
    before = snapshot(db.parent)
    with LogStore(db, readonly=True) as s:
        assert s.day_counts() == {"2026-03-03": 1}
        for write in (lambda: s.delete_day("2026-03-03"), lambda: s.add([]), s.purge):
            with pytest.raises(Exception, match="read-only"):
                write()
    assert snapshot(db.parent) == before


def test_empty_v0_database_is_migrated(db: Path) -> None:
    sqlite3.connect(db).execute("VACUUM").connection.close()  # a real, empty SQLite file: user_version 0
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone() == (0,)
    with LogStore(db) as s:
        assert s.schema_version == latest_version() >= 1
        s.add([utt("hi", "2026-03-03T12:00:00-05:00")])
    with LogStore(db, readonly=True) as s:
        assert s.count() == 1


def test_registered_migration_upgrades_an_existing_log(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with LogStore(db) as s:
        s.add([utt("kept", "2026-03-03T12:00:00-05:00", uid="k")])
    monkeypatch.setattr(store_module, "MIGRATIONS", list(store_module.MIGRATIONS))
    store_module.migration(lambda conn: conn.execute("CREATE TABLE extra (x INTEGER)"))
    with LogStore(db) as s:
        assert s.schema_version == latest_version() == 2
        assert [u.id for u in s.all()] == ["k"]
        assert s._conn.execute("SELECT count(*) FROM extra").fetchone() == (0,)


def test_newer_schema_is_refused_and_left_untouched(db: Path) -> None:
    with LogStore(db) as s:
        s.add([utt("future", "2026-03-03T12:00:00-05:00")])
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = snapshot(db.parent)
    for readonly in (False, True):
        with pytest.raises(CorruptFile, match="schema version 99, newer than this version of assistant-forget"):
            LogStore(db, readonly=readonly)
    assert snapshot(db.parent) == before


def test_non_database_file_is_reported_as_corrupt(db: Path) -> None:
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CorruptFile, match="not a readable log database"):
        LogStore(db)


def test_checkpoint_that_cannot_finish_reports_busy(db: Path) -> None:
    with LogStore(db, busy_timeout_ms=50) as s:
        s.add(synthetic_log(days=2, per_day=5))
        reader = sqlite3.connect(db)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM utterances").fetchone()  # holds a snapshot open
        s.delete_day("2026-01-01", purge=False)
        with pytest.raises(DeviceBusy, match="run the purge again"):
            s.purge()
        reader.close()
        s.purge()


def test_reader_never_sees_errors_or_partial_transactions(db: Path) -> None:
    per_day, days = 25, 40
    LogStore(db).close()
    stop, errors, seen = threading.Event(), [], []

    def read() -> None:
        try:
            with LogStore(db, readonly=True) as r:
                while not stop.is_set():
                    counts = r.day_counts()
                    assert all(n == per_day for n in counts.values()), counts  # a day is whole or absent
                    rows = r.all()
                    assert len(rows) % per_day == 0 and len({u.id for u in rows}) == len(rows)
                    seen.append(len(rows))
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            errors.append(e)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        with LogStore(db) as w:
            log = synthetic_log(days=days, per_day=per_day)
            for d in range(days):
                w.add(log[d * per_day:(d + 1) * per_day])
                if d % 8 == 7:
                    w.delete_day(log[(d - 4) * per_day].local_date)  # delete + purge under the reader
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert len(seen) > 10 and len(set(seen)) > 3  # the reader really read while the log changed
