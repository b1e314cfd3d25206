"""SQLite files that can forget without a trace: the machinery every device store shares.

A store is one SQLite database in the device directory (the utterance log `store.LogStore`, the keyed items
of a module family `items.ItemStore`). `SecureStore` owns everything about the file; a subclass owns its
schema (its own list of migrations) and its queries.

Deletion leaves nothing behind on disk: `secure_delete` zeroes freed cells and pages, and `purge()`
checkpoints the write-ahead log into the database and truncates it, rebuilds the file with VACUUM (so no
free page or unused page space that once held a deleted row survives) and checkpoints again.
Callers that delete several selectors pass `purge=False` and call `purge()` once at the end.

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
A read-only handle on a missing file behaves as an empty store and creates nothing.

The schema is checked on every open (`_check_schema`): the tables, indexes, views and triggers in the file
must be exactly those the store class's migrations create for its version (SQLite's own sqlite_stat* and
sqlite_sequence tables aside). Anything else, e.g. a trigger that copies deleted rows elsewhere, is reported
as a corrupt file before any statement runs.

The schema evolves through the class's migrations (`SecureStore.migrations()`); `PRAGMA user_version`
records how many have run. A database from a newer version is refused and left untouched.

SQLite's failures become the library's errors (`sqlite_errors`), each naming the file and the kind of
database (`SecureStore.KIND`).
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Iterator, Sequence, TypeVar

from ..core import crashpoints
from ..core.errors import BadInput, CorruptFile, DeviceBusy, DeviceNotFound, ForgetError

__all__ = ["BUSY_TIMEOUT_MS", "CHECKPOINT_TRIES", "IN_IDS", "Migration", "SecureStore", "check_writable",
           "ids_json", "schema_rows", "sqlite_errors"]

BUSY_TIMEOUT_MS = 5000  # how long a statement waits for another connection's lock before DeviceBusy
CHECKPOINT_TRIES = 3  # WAL truncations tried (each waiting up to the busy timeout) before purge gives up
IN_IDS = "id IN (SELECT value FROM json_each(?))"  # ids travel as one bound JSON array (see ids_json)

Migration = Callable[[sqlite3.Connection], None]  # upgrades a database by one version, inside a transaction
SchemaEntry = tuple[str, str, str, str | None]  # (type, name, tbl_name, sql) as in sqlite_schema

_S = TypeVar("_S", bound="SecureStore")


def schema_rows(conn: sqlite3.Connection) -> set[SchemaEntry]:
    """What sqlite_master lists, without SQLite's own bookkeeping tables; SQL text with whitespace folded."""
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return {(t, name, tbl, " ".join(sql.split()) if sql is not None else None) for t, name, tbl, sql in rows
            if not (t == "table" and (name.startswith("sqlite_stat") or name == "sqlite_sequence"))}


def sqlite_errors(method: Callable) -> Callable:
    """Turn SQLite failures into the library's errors, naming the database file and its kind."""

    @functools.wraps(method)
    def wrapper(self: "SecureStore", *args, **kwargs):
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
            raise CorruptFile(f"{self.path} is not a readable {self.KIND} ({e}); restore it from a backup "
                              f"or move it away to start {self.EMPTY}") from None

    return wrapper


class SecureStore:
    """Handle on one securely deleting SQLite store. Use as a context manager; `readonly=True` never writes.

    A subclass sets `KIND`, `EMPTY` and `TABLE` and its migrations (`MIGRATIONS`, or overrides
    `migrations()`), may register SQL functions in `_register`, and adds its queries; `_delete` deletes rows
    of `TABLE` with the crash point and purge every deletion needs.
    """

    KIND: ClassVar[str] = "database"  # what messages call the file: "log database", "item database"
    EMPTY: ClassVar[str] = "an empty store"  # what moving the file away starts: "an empty log"
    TABLE: ClassVar[str] = ""  # the table `_delete` deletes from
    MIGRATIONS: ClassVar[Sequence[Migration]] = ()  # MIGRATIONS[i] upgrades a database from version i to i + 1

    # -- the schema this class writes ----------------------------------------------------------
    @classmethod
    def migrations(cls) -> Sequence[Migration]:
        """This store's migrations, in order (looked up on each call)."""
        return cls.MIGRATIONS

    @classmethod
    def latest_version(cls) -> int:
        """The schema version this code writes: the number of migrations."""
        return len(cls.migrations())

    @classmethod
    def expected_schema(cls, version: int) -> set[SchemaEntry]:
        """The schema the first `version` migrations create (built in memory, each call)."""
        conn = sqlite3.connect(":memory:", isolation_level=None)
        try:
            for step in cls.migrations()[:version]:
                step(conn)
            return schema_rows(conn)
        finally:
            conn.close()

    # -- opening -------------------------------------------------------------------------------
    @sqlite_errors
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
            raise DeviceNotFound(f"{self.path.parent}: no such directory for the {self.KIND}")
        if not readonly and self.path.exists():
            check_writable(self.path)
        if readonly and self.path.is_dir():
            raise ForgetError(f"{self.path}: is a directory, not a {self.KIND}; move it away")
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
        self._register(self._conn)

    def _register(self, conn: sqlite3.Connection) -> None:
        """Register the SQL functions this store's queries use (none by default)."""

    def _open(self, busy_timeout_ms: int) -> None:
        self._setup(busy_timeout_ms)
        latest = self.latest_version()
        found = self.schema_version  # reads the header: a non-database fails here, before any write
        if found > latest:
            raise CorruptFile(f"{self.path} has schema version {found}, newer than this version of assistant-forget "
                              f"reads ({latest}); upgrade assistant-forget to open it")
        self._check_schema(found)
        if self.readonly:
            self._conn.execute("PRAGMA query_only = ON")
            if found < latest:
                raise ForgetError(f"{self.path} has schema version {found} and needs an upgrade to "
                                  f"{latest}; run a writing command (e.g. `assistant-forget import`) first")
            return
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise ForgetError(f"{self.path}: SQLite could not enable WAL mode (got {mode!r}); "
                              f"put the device directory on a local file system")
        for pragma in ("synchronous = FULL", "secure_delete = ON", "temp_store = MEMORY"):
            self._conn.execute(f"PRAGMA {pragma}")
        if found < latest:
            self._migrate(found)

    def _check_schema(self, version: int) -> None:
        """Raise CorruptFile naming what differs when the file's schema is not what `version` migrations create."""
        found, expected = schema_rows(self._conn), self.expected_schema(version)
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
        raise CorruptFile(f"schema of {self.path} has {' and '.join(what)} (schema version {version}); the "
                          f"{self.KIND} was modified outside assistant-forget: restore it from a backup or move it "
                          f"away to start {self.EMPTY}")

    def _migrate(self, checked: int) -> None:
        """Run the migrations after version `checked` (whose schema `_check_schema` accepted)."""
        with self._transaction():
            steps = self.migrations()
            latest = len(steps)
            found = self.schema_version
            if found > latest:  # re-checked under the write lock
                raise CorruptFile(f"{self.path} has schema version {found}, newer than this code ({latest})")
            if found != checked:  # another writer migrated meanwhile: check what it made
                self._check_schema(found)
            for step in steps[found:]:
                step(self._conn)
            if found != latest:
                self._conn.execute(f"PRAGMA user_version = {latest:d}")

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
            raise ForgetError(f"{self.path} was opened read-only; open {type(self).__name__}(path) to change it")

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (the last one to close folds and removes the -wal/-shm side files)."""
        self._conn.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The database's schema version (PRAGMA user_version)."""
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    # -- deleting ----------------------------------------------------------------------------
    def _delete(self, where: str, params: tuple, purge: bool) -> int:
        """Delete the rows of `TABLE` matching `where` in one transaction (then purge, unless told not to)."""
        self._require_writer()
        with self._transaction():
            n = self._conn.execute(f"DELETE FROM {self.TABLE} WHERE {where}", params).rowcount
        crashpoints.hit("store.rows_deleted")
        if purge:
            self.purge()
        return n

    @sqlite_errors
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


def check_writable(path: Path) -> None:
    """Refuse, before anything is written, a database file this process cannot write (read-only, immutable)."""
    try:
        os.close(os.open(path, os.O_RDWR))
    except OSError as e:
        raise ForgetError(f"{path}: cannot be opened for writing ({e.strerror}); a command that changes the "
                          "device needs its files writable (nothing was changed)") from None


def ids_json(ids: Iterable[str]) -> str:
    """Ids as one JSON array, validated, to bind as a single SQL parameter (`IN_IDS`)."""
    ids = list(ids) if not isinstance(ids, str) else [ids]
    bad = [uid for uid in ids if not isinstance(uid, str)]
    if bad:
        raise BadInput(f"ids must be strings, got {bad[:3]!r}")
    return json.dumps(ids)
