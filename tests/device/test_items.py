"""The item database of a module family: reading order, queries, all-or-nothing adds with checked keys and
ids, deletion that leaves no payload byte behind, read-only handles, and the schema check on every open."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from pathlib import Path

import pytest

from assistant_forget.core import crashpoints
from assistant_forget.core.errors import BadInput, CorruptFile, ForgetError
from assistant_forget.device.items import ITEMS_FILE, Item, ItemStore
from assistant_forget.device.store import LogStore
from scan import snapshot


def payload(tag: str) -> bytes:
    """A distinctive 64-byte payload: no other item's bytes, and no SQLite structure, contain it."""
    return hashlib.sha512(f"payload|{tag}".encode()).digest()


def item(uid: str, key: str) -> Item:
    return Item(uid, key, payload(uid))


def holders(root: Path, data: bytes) -> list[str]:
    """Names of the files under `root` (the database, its -wal and -shm) whose raw bytes contain `data`."""
    return sorted(p.name for p in root.rglob("*") if p.is_file() and data in p.read_bytes())


def canonical(items: list[Item]) -> list[Item]:
    return sorted(items, key=lambda it: (it.key, it.id))


KEYS = ["2026-03-01", "2026-03-02", "2026-03-10", "user-17", "user-2", "A+b@c"]
ROWS = [item(f"{k}.{i}", k) for k in KEYS for i in (3, 0, 11, 2)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    (tmp_path / "dev").mkdir()
    return tmp_path / "dev" / ITEMS_FILE


@pytest.fixture
def filled(db: Path) -> Path:
    with ItemStore(db) as s:
        assert s.add(ROWS) == len(ROWS)
    return db


def test_items_file_name_and_local_date() -> None:
    assert ITEMS_FILE == "items.sqlite"
    it = Item("user-17.0", "user-17", b"\x00\x01")
    assert it.local_date == "user-17"
    with pytest.raises(AttributeError):
        it.key = "other"  # type: ignore[misc]


def test_reading_order_does_not_depend_on_insertion_order(tmp_path: Path) -> None:
    expected = canonical(ROWS)
    assert expected != ROWS  # the test data is not already in order
    for seed in range(4):
        rows = ROWS[:]
        random.Random(seed).shuffle(rows)
        path = tmp_path / f"s{seed}.sqlite"
        with ItemStore(path) as s:
            s.add(rows[:9])
            s.add(rows[9:])
        with ItemStore(path, readonly=True) as s:
            assert s.all() == expected
            assert [it.id for it in s.by_day("user-17")] == ["user-17.0", "user-17.11", "user-17.2", "user-17.3"]
            assert s.by_ids([r.id for r in rows]) == expected
            assert s.by_keys(reversed(KEYS)) == expected
            assert all(isinstance(it.payload, bytes) for it in s.all())


def test_counts_and_queries(filled: Path) -> None:
    with ItemStore(filled, readonly=True) as s:
        assert s.count() == len(ROWS)
        counts = s.day_counts()
        assert counts == {k: 4 for k in KEYS}
        assert list(counts) == sorted(KEYS) == ["2026-03-01", "2026-03-02", "2026-03-10", "A+b@c", "user-17",
                                                "user-2"]
        in_march = s.by_range("2026-03-01", "2026-03-02")
        assert in_march == canonical([r for r in ROWS if r.key in ("2026-03-01", "2026-03-02")])
        assert {it.key for it in s.by_range("2026-03-02", "2026-03-02")} == {"2026-03-02"}
        assert {it.key for it in s.by_range("user", "user-2")} == {"user-17", "user-2"}  # string order
        assert s.by_range("2026-04", "2026-05") == []
        assert s.before("2026-03-10") == canonical([r for r in ROWS if r.key < "2026-03-10"])
        assert {it.key for it in s.before("user-2")} == set(KEYS) - {"user-2"}
        assert s.before("0") == []
        assert s.by_ids(["user-2.0", "nope", "user-2.0"]) == [item("user-2.0", "user-2")]
        assert s.by_keys(["user-2", "none"]) == canonical([r for r in ROWS if r.key == "user-2"])
        assert s.existing_ids(["user-2.0", "user-2.1", "2026-03-01.11"]) == {"user-2.0", "2026-03-01.11"}
        assert s.by_day("absent") == [] and s.by_ids([]) == [] and s.by_keys([]) == []
        with pytest.raises(BadInput, match="empty"):
            s.by_range("user-2", "user-17")
        for bad in ("a/b", "..", ""):
            with pytest.raises(BadInput):
                s.by_day(bad)
        with pytest.raises(BadInput, match="items hold tensors, not text: forget by key or item id"):
            s.matching("hello")


def test_duplicate_ids_are_refused_and_nothing_is_added(filled: Path) -> None:
    before = snapshot(filled.parent)
    with ItemStore(filled) as s:
        with pytest.raises(BadInput, match=r"nothing was added: id 'new\.1' appears 2 times in the batch"):
            s.add([item("new.0", "new"), item("new.1", "new"), Item("new.1", "other", b"x")])
        with pytest.raises(BadInput, match=r"already in the store \(e\.g\. \['user-2\.3'\]\); nothing was added"):
            s.add([item("new.0", "new"), Item("user-2.3", "user-2", b"other bytes"), item("new.2", "new")])
        assert s.count() == len(ROWS) and s.existing_ids(["new.0", "new.1", "new.2"]) == set()
        assert s.by_ids(["user-2.3"]) == [item("user-2.3", "user-2")]  # the stored one is untouched
        assert holders(filled.parent, payload("new.0")) == []
    assert snapshot(filled.parent) == before


@pytest.mark.parametrize("bad", ["a/b", "..", "", "k" * 200, "a\\b", ".hidden", "two words", None])
def test_bad_keys_and_ids_are_refused_and_nothing_is_added(filled: Path, bad: object) -> None:
    with ItemStore(filled) as s:
        for batch in ([item("fine.0", "fine"), Item("fine.1", bad, b"p")],  # type: ignore[arg-type]
                      [item("fine.0", "fine"), Item(bad, "fine", b"p")]):  # type: ignore[arg-type]
            with pytest.raises(BadInput, match="nothing was added"):
                s.add(batch)
            assert s.count() == len(ROWS) and s.existing_ids(["fine.0"]) == set()
        with pytest.raises(BadInput, match="payload must be bytes"):
            s.add([Item("fine.2", "fine", "text")])  # type: ignore[arg-type]
        assert s.count() == len(ROWS)


def test_delete_ids_leaves_no_payload_bytes_in_any_file(filled: Path) -> None:
    root = filled.parent
    gone = [r for r in ROWS if r.key == "user-17"] + [ROWS[0]]
    kept = [r for r in ROWS if r not in gone]
    with ItemStore(filled) as s:
        s.add([item(f"bulk.{i:04d}", f"bulk-{i % 7}") for i in range(600)])  # several pages, an index
        for r in gone + kept:
            assert holders(root, r.payload), r.id  # the scan sees every stored payload
        assert s.delete_ids([r.id for r in gone] + ["unknown"], purge=False) == len(gone)
        assert any(holders(root, r.payload) for r in gone)  # deleted payloads linger until purged
        s.purge()
        assert [r.id for r in gone if holders(root, r.payload)] == []
        assert [r.id for r in kept if holders(root, r.payload) != [ITEMS_FILE]] == []
        assert (root / (ITEMS_FILE + "-wal")).stat().st_size == 0
        assert s.by_ids([r.id for r in gone]) == [] and s.count() == len(ROWS) + 600 - len(gone)
        more = s.by_day("bulk-3")
        assert s.delete_ids([it.id for it in more]) == len(more)  # purges by default
        assert [it.id for it in more if holders(root, it.payload)] == []
    assert sorted(p.name for p in root.iterdir()) == [ITEMS_FILE]
    with ItemStore(filled, readonly=True) as s:
        assert s.all() == canonical(kept + [item(f"bulk.{i:04d}", f"bulk-{i % 7}") for i in range(600) if i % 7 != 3])
    conn = sqlite3.connect(filled)
    assert conn.execute("PRAGMA freelist_count").fetchone() == (0,)  # VACUUM left no free pages behind
    conn.close()


def test_the_byte_scan_catches_a_skipped_purge(filled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guarantee above rests on purge(): without it, a deleted payload is still readable in the files."""
    monkeypatch.setattr(ItemStore, "purge", lambda self: None)
    with ItemStore(filled) as s:
        assert s.delete_ids(["user-2.0"]) == 1
        assert holders(filled.parent, payload("user-2.0")) != []


@pytest.mark.parametrize("secure", [True, False])
def test_secure_delete_zeroes_deleted_cells_even_before_vacuum(filled: Path, secure: bool) -> None:
    """Checkpointed without VACUUM, a deleted payload survives in its page exactly when secure_delete is off:
    the store turns it on, so deleted cells are zeroed, not just unlinked."""
    with ItemStore(filled) as s:
        assert s._conn.execute("PRAGMA secure_delete").fetchone() == (1,)
        if not secure:
            s._conn.execute("PRAGMA secure_delete = OFF")  # what the store would be without it
        assert s.delete_ids(["user-2.0", "2026-03-10.11"], purge=False) == 2
        s._checkpoint()  # the WAL folded in and truncated: only the database file is left to read
        found = holders(filled.parent, payload("user-2.0")) + holders(filled.parent, payload("2026-03-10.11"))
        assert (found == []) is secure
        assert holders(filled.parent, payload("user-2.3")) == [ITEMS_FILE]


def test_the_store_turns_secure_delete_on_itself(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds differ in the default (this one may be compiled with SECURE_DELETE): the store must not rely on it."""
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args, **kwargs) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    with ItemStore(db) as s:
        assert s._conn.execute("PRAGMA secure_delete").fetchone() == (1,)
    assert "PRAGMA secure_delete = ON" in statements


def test_deletion_passes_the_store_crash_points_in_order(filled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int, bool]] = []

    def hit(name: str) -> None:  # what a process killed at this point would leave: committed? still on disk?
        other = sqlite3.connect(f"{filled.resolve().as_uri()}?mode=ro", uri=True)
        n = other.execute("SELECT count(*) FROM items").fetchone()[0]
        other.close()
        seen.append((name, n, bool(holders(filled.parent, payload("user-2.0")))))

    monkeypatch.setattr(crashpoints, "hit", hit)
    with ItemStore(filled) as s:
        s.delete_ids(["user-2.0"])
    # committed before either point; the payload is in the WAL until the checkpoint folds in zeroed pages
    assert seen == [("store.rows_deleted", len(ROWS) - 1, True), ("store.wal_checkpointed", len(ROWS) - 1, False)]


def test_readonly_handle_on_a_missing_file_is_empty_and_creates_nothing(db: Path) -> None:
    with ItemStore(db, readonly=True) as s:
        assert s.count() == 0 and s.all() == [] and s.day_counts() == {} and s.by_day("k") == []
        for write in (lambda: s.add([item("a.0", "a")]), lambda: s.delete_ids(["a.0"]), s.purge):
            with pytest.raises(ForgetError, match="opened read-only; open ItemStore"):
                write()
    assert list(db.parent.iterdir()) == []


def test_readonly_handle_never_writes(filled: Path) -> None:
    before = snapshot(filled.parent)
    with ItemStore(filled, readonly=True) as s:
        assert s.count() == len(ROWS)
        with pytest.raises(ForgetError, match="read-only"):
            s.delete_ids([r.id for r in ROWS])
    assert snapshot(filled.parent) == before


def test_reopening_checks_the_schema(filled: Path) -> None:
    conn = sqlite3.connect(filled)
    conn.executescript("CREATE TABLE copies (id, payload);"
                       "CREATE TRIGGER keep AFTER DELETE ON items BEGIN INSERT INTO copies VALUES (old.id, "
                       "old.payload); END;")
    conn.close()
    conn = sqlite3.connect(filled)
    conn.execute("DROP TABLE copies")  # the trigger alone is left: still not what version 1 creates
    conn.commit()
    conn.close()
    before = snapshot(filled.parent)
    for readonly in (False, True):
        with pytest.raises(CorruptFile, match=rf"^schema of {filled} has an unexpected trigger 'keep' \(schema version "
                                              r"1\); the item database was modified outside assistant-forget"):
            ItemStore(filled, readonly=readonly)
    assert snapshot(filled.parent) == before


def test_a_log_database_is_not_an_item_database(tmp_path: Path) -> None:
    """Each store checks against its own migrations: a log's schema is refused by the item store."""
    with LogStore(tmp_path / "logs.sqlite"):
        pass
    with pytest.raises(CorruptFile, match=r"no table 'items'.*an unexpected table 'utterances'"):
        ItemStore(tmp_path / "logs.sqlite")
    with ItemStore(tmp_path / ITEMS_FILE) as s:
        assert s.schema_version == ItemStore.latest_version() == 1
    with pytest.raises(CorruptFile, match="log database was modified"):
        LogStore(tmp_path / ITEMS_FILE)


def test_newer_schema_is_refused_and_left_untouched(filled: Path) -> None:
    conn = sqlite3.connect(filled)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = snapshot(filled.parent)
    for readonly in (False, True):
        with pytest.raises(CorruptFile, match="schema version 99, newer than this version of assistant-forget"):
            ItemStore(filled, readonly=readonly)
    assert snapshot(filled.parent) == before


def test_non_database_file_is_reported_as_corrupt(db: Path) -> None:
    db.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(CorruptFile, match="not a readable item database.*an empty item store"):
        ItemStore(db)
