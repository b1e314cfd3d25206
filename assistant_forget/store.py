"""The on-device utterance log: one SQLite database, DIR/logs.sqlite, that can forget without a trace.

Each row is an `Utterance`: id, text, intent, UTC instant, zone at capture, derived local date, source.
Everything that reads utterances gets them in one order, (local_date, utc instant, text, id), so that
training never depends on insertion order.

Deletion leaves nothing behind on disk: `secure_delete` zeroes freed cells and pages, and `purge()`
checkpoints the write-ahead log into the database and truncates it, rebuilds the file with VACUUM (so no
free page or unused page space that once held a deleted row survives) and checkpoints again.
Callers that delete several selectors pass `purge=False` and call `purge()` once at the end.

Text matching (`matching`, `delete_matching`) compares `utterance.match_key` forms through the SQL
function af_contains: case, accents, full-width forms, invisible characters and word breaks never hide a match.

Concurrency: WAL mode with a busy timeout; one writer (the device lock serialises writer processes) and
any number of readers, each reader statement seeing one committed state.

Read-only handles (`readonly=True`) never change a file:
- where this process can write the directory and the file, a normal connection with `query_only`: it shares
  the writer's -wal/-shm, so readers stay consistent while a forget runs, and closing the last handle removes
  the side files it made (a `mode=ro` connection would leave an empty -wal and -shm behind: SQLite 3.40);
- where it cannot (a read-only mount, an immutable file or directory, a file without write permission),
  `mode=ro&immutable=1`: SQLite creates no side file and takes no lock. Nobody can be writing there, and a
  writer always folds its write-ahead log into the file and truncates it when it closes; a non-empty -wal
  left by a writer that crashed is read through its -shm (`mode=ro`), or refused with a clear error when
  that cannot be done, rather than silently ignored.

The schema is checked on every open (`_check_schema`): the tables, indexes, views and triggers in the file
must be exactly those the registered migrations create for its version (SQLite's own sqlite_stat* and
sqlite_sequence tables aside). Anything else, e.g. a trigger that copies deleted rows elsewhere, is reported
as a corrupt file before any statement runs.

The schema evolves through registered migrations (`@migration`); `PRAGMA user_version` records how many
have run. A database from a newer version is refused and left untouched.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections import Counter
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Callable, Iterable, Iterator

from . import crashpoints
from .errors import BadInput, CorruptFile, DeviceBusy, DeviceNotFound, ForgetError
from .localtime import parse_date, parse_date_range, utc_micros
from .utterance import Utterance, bad_characters, match_key, utterance_problems

__all__ = ["LogStore", "Utterance", "latest_version", "migration"]

BUSY_TIMEOUT_MS = 5000  # how long a statement waits for another connection's lock before DeviceBusy
CHECKPOINT_TRIES = 3  # WAL truncations tried (each waiting up to the busy timeout) before purge gives up


def _contains(haystack: str, needle_key: str) -> int:
    """SQL function af_contains(text, key): 1 when match_key(text) contains the needle's match key."""
    return int(needle_key in match_key(haystack))


# -- schema migrations ----------------------------------------------------------------------------

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []  # MIGRATIONS[i] upgrades a database from version i to i + 1


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next schema migration (run inside the upgrade transaction)."""
    MIGRATIONS.append(fn)
    return fn


def latest_version() -> int:
    """The schema version this code writes: the number of registered migrations."""
    return len(MIGRATIONS)


SchemaEntry = tuple[str, str, str, str | None]  # (type, name, tbl_name, sql) as in sqlite_schema


def _schema_rows(conn: sqlite3.Connection) -> set[SchemaEntry]:
    """What sqlite_master lists, without SQLite's own bookkeeping tables; SQL text with whitespace folded."""
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return {(t, name, tbl, " ".join(sql.split()) if sql is not None else None) for t, name, tbl, sql in rows
            if not (t == "table" and (name.startswith("sqlite_stat") or name == "sqlite_sequence"))}


def expected_schema(version: int) -> set[SchemaEntry]:
    """The schema the first `version` registered migrations create (built in memory, each call)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for step in MIGRATIONS[:version]:
            step(conn)
        return _schema_rows(conn)
    finally:
        conn.close()


@migration
def _v1_utterances(conn: sqlite3.Connection) -> None:
    """Version 1: the utterance table, indexed for day and range queries in reading order."""
    conn.execute("""CREATE TABLE utterances (
        id TEXT PRIMARY KEY NOT NULL,
        text TEXT NOT NULL,
        intent TEXT NOT NULL,
        utc TEXT NOT NULL,
        utc_us INTEGER NOT NULL, -- the instant in microseconds since 1970: sorts by time
        tz TEXT NOT NULL,
        local_date TEXT NOT NULL,
        source TEXT NOT NULL)""")
    conn.execute("CREATE INDEX utterances_by_day ON utterances (local_date, utc_us)")


# -- the store ------------------------------------------------------------------------------------

_COLUMNS = "id, text, intent, utc, tz, local_date, source"
_ORDER = "ORDER BY local_date, utc_us, text, id"
_INSERT = ("INSERT INTO utterances (id, text, intent, utc, utc_us, tz, local_date, source) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_IN_IDS = "id IN (SELECT value FROM json_each(?))"  # ids travel as one bound JSON array


def _sqlite_errors(method: Callable) -> Callable:
    """Turn SQLite failures into the library's errors, naming the database file."""

    @functools.wraps(method)
    def wrapper(self: "LogStore", *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise DeviceBusy(f"{self.path} is locked by another process ({e}); "
                                 "try again when it finishes") from None
            hint = ("; it must be a readable SQLite file in a writable directory" if "unable to open" in str(e) else
                    f"; free space on the file system holding {self.path.parent} and run the command again"
                    if "full" in str(e) else "")
            raise ForgetError(f"{self.path}: SQLite error: {e}{hint}") from None
        except sqlite3.DatabaseError as e:
            raise CorruptFile(f"{self.path} is not a readable log database ({e}); restore it from a backup "
                              f"or move it away to start an empty log") from None

    return wrapper


class LogStore:
    """Handle on a device's utterance log. Use as a context manager; `readonly=True` never writes.

    A read-only handle on a missing file behaves as an empty store and creates nothing.
    """

    @_sqlite_errors
    def __init__(self, path: Path, readonly: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.immutable = False  # True when opened with immutable=1 (read-only handle on an unwritable location)
        if readonly and not self.path.exists():
            self._conn = sqlite3.connect(":memory:", isolation_level=None)
            self._setup(busy_timeout_ms)
            self._migrate(0)
            self._conn.execute("PRAGMA query_only = ON")
            return
        if not self.path.parent.is_dir():
            raise DeviceNotFound(f"{self.path.parent}: no such directory for the log database")
        if not readonly and self.path.exists():
            _check_writable(self.path)
        if readonly and self.path.is_dir():
            raise ForgetError(f"{self.path}: is a directory, not a log database; move it away")
        query = "mode=rwc"
        if readonly:
            query = self._readonly_query()
            self.immutable = query.endswith("immutable=1")
        self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?{query}", uri=True, isolation_level=None)
        try:
            self._open(busy_timeout_ms)
        except BaseException:
            self._conn.close()
            raise

    def _readonly_query(self) -> str:
        """URI parameters of a read-only handle (see the module docstring): rw + query_only where this process
        could write anyway (to share the writer's WAL safely), else mode=ro, immutable unless a WAL holds data."""
        if os.access(self.path.parent, os.W_OK) and os.access(self.path, os.W_OK):
            return "mode=rw"
        wal = self.path.with_name(self.path.name + "-wal")
        if not (wal.is_file() and wal.stat().st_size > 0):
            return "mode=ro&immutable=1"
        if not self.path.with_name(self.path.name + "-shm").is_file():
            raise ForgetError(f"{self.path}: its write-ahead log {wal.name} holds changes that were never folded in "
                              "(a writer was interrupted) and cannot be read where files cannot be written; open "
                              "the device once where it is writable (any write command, e.g. `assistant-forget "
                              "maintain`) and try again")
        return "mode=ro"

    def _setup(self, busy_timeout_ms: int) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._conn.create_function("af_contains", 2, _contains, deterministic=True)

    def _open(self, busy_timeout_ms: int) -> None:
        self._setup(busy_timeout_ms)
        found = self.schema_version  # reads the header: a non-database fails here, before any write
        if found > latest_version():
            raise CorruptFile(f"{self.path} has schema version {found}, newer than this version of assistant-forget "
                              f"reads ({latest_version()}); upgrade assistant-forget to open it")
        self._check_schema(found)
        if self.readonly:
            self._conn.execute("PRAGMA query_only = ON")
            if found < latest_version():
                raise ForgetError(f"{self.path} has schema version {found} and needs an upgrade to "
                                  f"{latest_version()}; run a writing command (e.g. `assistant-forget import`) first")
            return
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise ForgetError(f"{self.path}: SQLite could not enable WAL mode (got {mode!r}); "
                              f"put the device directory on a local file system")
        for pragma in ("synchronous = FULL", "secure_delete = ON", "temp_store = MEMORY"):
            self._conn.execute(f"PRAGMA {pragma}")
        if found < latest_version():
            self._migrate(found)

    def _check_schema(self, version: int) -> None:
        """Raise CorruptFile naming what differs when the file's schema is not what `version` migrations create."""
        found, expected = _schema_rows(self._conn), expected_schema(version)
        if found == expected:
            return
        by_name = {(t, name): sql for t, name, _, sql in expected}
        rank = {"table": 0, "view": 1, "index": 2, "trigger": 3}

        def named(entries: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:  # autoindexes follow their table
            ordered = sorted(entries, key=lambda e: (rank.get(e[0], 4), e[1]))
            return [e for e in ordered if not e[1].startswith("sqlite_autoindex_")] or ordered

        extra = named((t, name) for t, name, _, sql in found if by_name.get((t, name), 0) != sql)
        missing = named({(t, name) for t, name, _, _ in expected} - {(t, name) for t, name, _, _ in found})
        what = [f"no {t} {name!r}" for t, name in missing[:3]] + [
            f"an unexpected {t} {name!r}" if (t, name) not in by_name else f"a changed {t} {name!r}"
            for t, name in extra[:3]]
        raise CorruptFile(f"schema of {self.path} has {' and '.join(what)} (schema version {version}); the log "
                          "database was modified outside assistant-forget: restore it from a backup or move it "
                          "away to start an empty log")

    def _migrate(self, checked: int) -> None:
        """Run the migrations after version `checked` (whose schema `_check_schema` accepted)."""
        with self._transaction():
            found = self.schema_version
            if found > latest_version():  # re-checked under the write lock
                raise CorruptFile(f"{self.path} has schema version {found}, newer than this code ({latest_version()})")
            if found != checked:  # another writer migrated meanwhile: check what it made
                self._check_schema(found)
            for step in MIGRATIONS[found:]:
                step(self._conn)
            if found != latest_version():
                self._conn.execute(f"PRAGMA user_version = {latest_version():d}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction: taken immediately (so waits happen up front), rolled back on any error."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _require_writer(self) -> None:
        if self.readonly:
            raise ForgetError(f"{self.path} was opened read-only; open LogStore(path) to change it")

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (the last one to close folds and removes the -wal/-shm side files)."""
        self._conn.close()

    def __enter__(self) -> "LogStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The database's schema version (PRAGMA user_version)."""
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    # -- reading -----------------------------------------------------------------------------
    def _select(self, where: str, params: tuple = ()) -> list[Utterance]:
        rows = self._conn.execute(f"SELECT {_COLUMNS} FROM utterances WHERE {where} {_ORDER}", params).fetchall()
        return [Utterance(*row) for row in rows]  # built after the read ends: shorter read locks

    @_sqlite_errors
    def count(self) -> int:
        """Number of stored utterances."""
        return int(self._conn.execute("SELECT count(*) FROM utterances").fetchone()[0])

    @_sqlite_errors
    def day_counts(self) -> dict[str, int]:
        """Utterances per local day, days in ascending order ({'2026-03-03': 41, ...})."""
        rows = self._conn.execute("SELECT local_date, count(*) FROM utterances GROUP BY local_date ORDER BY local_date")
        return {day: n for day, n in rows}

    @_sqlite_errors
    def all(self) -> list[Utterance]:
        """Every utterance, in reading order."""
        return self._select("1")

    @_sqlite_errors
    def by_day(self, day: str | date) -> list[Utterance]:
        """The utterances of one local day."""
        return self._select("local_date = ?", (parse_date(day).isoformat(),))

    @_sqlite_errors
    def by_range(self, start: str | date, end: str | date) -> list[Utterance]:
        """The utterances of the local days start..end, both included."""
        first, last = parse_date_range(start, end)
        return self._select("local_date BETWEEN ? AND ?", (first.isoformat(), last.isoformat()))

    @_sqlite_errors
    def before(self, day: str | date) -> list[Utterance]:
        """The utterances of every local day strictly before `day` (replay data for training that day)."""
        return self._select("local_date < ?", (parse_date(day).isoformat(),))

    @_sqlite_errors
    def by_ids(self, ids: Iterable[str]) -> list[Utterance]:
        """The stored utterances among `ids` (unknown ids are skipped; compare lengths to detect them)."""
        return self._select(_IN_IDS, (_ids_json(ids),))

    @_sqlite_errors
    def matching(self, needle: str) -> list[Utterance]:
        """Utterances whose text contains `needle` under `utterance.match_key` (case, accents, width, invisible
        characters and word breaks ignored)."""
        return self._select("af_contains(text, ?)", (_folded_needle(needle),))

    @_sqlite_errors
    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of `ids` are already stored."""
        rows = self._conn.execute(f"SELECT id FROM utterances WHERE {_IN_IDS}", (_ids_json(ids),))
        return {uid for (uid,) in rows}

    # -- writing -----------------------------------------------------------------------------
    @_sqlite_errors
    def add(self, utterances: Iterable[Utterance]) -> int:
        """Append utterances in one transaction: all are stored or none. Returns how many."""
        self._require_writer()
        batch = list(utterances)
        problems = [f"utterance {u.id!r}: {field}: {p}" for u in batch for field, p in utterance_problems(u)]
        ids = [u.id for u in batch]
        problems += [f"id {uid!r} appears {n} times in the batch" for uid, n in Counter(ids).items() if n > 1]
        if problems:
            raise BadInput(f"{len(problems)} problem(s), nothing was added: " + "; ".join(problems[:10]))
        rows = [(u.id, u.text, u.intent, u.utc, utc_micros(u.utc), u.tz, u.local_date, u.source) for u in batch]
        try:
            with self._transaction():
                self._conn.executemany(_INSERT, rows)
        except sqlite3.IntegrityError:
            taken = sorted(self.existing_ids(ids))
            raise BadInput(f"{len(taken)} id(s) are already in the store (e.g. {taken[:3]}); "
                           "nothing was added") from None
        return len(batch)

    def _delete(self, where: str, params: tuple, purge: bool) -> int:
        self._require_writer()
        with self._transaction():
            n = self._conn.execute(f"DELETE FROM utterances WHERE {where}", params).rowcount
        crashpoints.hit("store.rows_deleted")
        if purge:
            self.purge()
        return n

    @_sqlite_errors
    def delete_day(self, day: str | date, purge: bool = True) -> int:
        """Delete one local day's utterances (then purge, unless told not to). Returns how many."""
        return self._delete("local_date = ?", (parse_date(day).isoformat(),), purge)

    @_sqlite_errors
    def delete_range(self, start: str | date, end: str | date, purge: bool = True) -> int:
        """Delete the utterances of local days start..end, both included. Returns how many."""
        first, last = parse_date_range(start, end)
        return self._delete("local_date BETWEEN ? AND ?", (first.isoformat(), last.isoformat()), purge)

    @_sqlite_errors
    def delete_ids(self, ids: Iterable[str], purge: bool = True) -> int:
        """Delete the utterances with these ids (unknown ids are ignored). Returns how many."""
        return self._delete(_IN_IDS, (_ids_json(ids),), purge)

    @_sqlite_errors
    def delete_matching(self, needle: str, purge: bool = True) -> int:
        """Delete the utterances whose text contains `needle` (as `matching` finds them). Returns how many."""
        return self._delete("af_contains(text, ?)", (_folded_needle(needle),), purge)

    @_sqlite_errors
    def purge(self) -> None:
        """Make past deletions unrecoverable from the files: checkpoint + truncate the WAL, VACUUM, again."""
        self._require_writer()
        self._checkpoint()
        crashpoints.hit("store.wal_checkpointed")
        self._conn.execute("VACUUM")
        self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it to 0 bytes; each try waits up to the busy timeout."""
        for _ in range(CHECKPOINT_TRIES):
            busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
        raise DeviceBusy(f"{self.path}: a reader kept the write-ahead log busy, so deleted rows may still "
                         f"be in {self.path.name}-wal; run the purge again when readers are done")


def _check_writable(path: Path) -> None:
    """Refuse, before anything is written, a database file this process cannot write (read-only, immutable)."""
    try:
        os.close(os.open(path, os.O_RDWR))
    except OSError as e:
        raise ForgetError(f"{path}: cannot be opened for writing ({e.strerror}); a command that changes the "
                          "device needs its files writable (nothing was changed)") from None


def _ids_json(ids: Iterable[str]) -> str:
    """Ids as one JSON array, validated, to bind as a single SQL parameter."""
    ids = list(ids) if not isinstance(ids, str) else [ids]
    bad = [uid for uid in ids if not isinstance(uid, str)]
    if bad:
        raise BadInput(f"ids must be strings, got {bad[:3]!r}")
    return json.dumps(ids)


def _folded_needle(needle: str) -> str:
    """Validate a text-match needle and return its match key for af_contains."""
    if not isinstance(needle, str) or not needle.strip():
        raise BadInput(f"text to match must be a non-empty string, got {needle!r}; it would match every utterance")
    problem = bad_characters(needle)
    if problem:
        raise BadInput(f"text to match {problem}")
    key = match_key(needle)
    if not key:
        raise BadInput(f"text to match {needle!r} is only invisible characters, spaces or accents; "
                       "it would match every utterance")
    return key
