"""The on-device utterance log: one SQLite database, DIR/logs.sqlite, that can forget without a trace.

Each row is an `Utterance`: id, text, intent, UTC instant, zone at capture, derived local date, source.
Everything that reads utterances gets them in one order, (local_date, utc instant, text, id), so that
training never depends on insertion order.

The file itself is a `sqlite.SecureStore` (see that module): deletion leaves nothing behind on disk
(`secure_delete`, and `purge()`: checkpoint + truncate the write-ahead log, VACUUM, checkpoint again),
WAL with one writer and any number of readers, read-only handles that never change a file, the schema
checked on every open, SQLite's failures reported as the library's errors. Callers that delete several
selectors pass `purge=False` and call `purge()` once at the end.

Text matching (`matching`, `delete_matching`) compares `utterance.match_key` forms through the SQL
function af_contains: case, accents, full-width forms, invisible characters and word breaks never hide a match.

The schema evolves through registered migrations (`@migration`, the module's `MIGRATIONS`); `PRAGMA
user_version` records how many have run. A database from a newer version is refused and left untouched; one
whose tables, indexes, views or triggers are not exactly what its version's migrations create (e.g. a trigger
that copies deleted rows elsewhere) is reported as a corrupt file before any statement runs.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import date
from typing import Iterable

from ..core.errors import BadInput
from .localtime import parse_date, parse_date_range, utc_micros
from .sqlite import IN_IDS as _IN_IDS
from .sqlite import Migration, SchemaEntry, SecureStore
from .sqlite import ids_json as _ids_json
from .sqlite import sqlite_errors as _sqlite_errors
from .utterance import Utterance, bad_characters, match_key, utterance_problems

__all__ = ["LogStore", "Utterance", "latest_version", "migration"]


def _contains(haystack: str, needle_key: str) -> int:
    """SQL function af_contains(text, key): 1 when match_key(text) contains the needle's match key."""
    return int(needle_key in match_key(haystack))


# -- schema migrations ----------------------------------------------------------------------------

MIGRATIONS: list[Migration] = []  # MIGRATIONS[i] upgrades a database from version i to i + 1


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next schema migration (run inside the upgrade transaction)."""
    MIGRATIONS.append(fn)
    return fn


def latest_version() -> int:
    """The schema version this code writes: the number of registered migrations."""
    return len(MIGRATIONS)


def expected_schema(version: int) -> set[SchemaEntry]:
    """The schema the first `version` registered migrations create (built in memory, each call)."""
    return LogStore.expected_schema(version)


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


class LogStore(SecureStore):
    """Handle on a device's utterance log. Use as a context manager; `readonly=True` never writes.

    A read-only handle on a missing file behaves as an empty store and creates nothing.
    """

    KIND = "log database"
    EMPTY = "an empty log"
    TABLE = "utterances"

    @classmethod
    def migrations(cls) -> list[Migration]:
        """The registered migrations (`@migration`): this module's MIGRATIONS, looked up on each call."""
        return MIGRATIONS

    def _register(self, conn: sqlite3.Connection) -> None:
        conn.create_function("af_contains", 2, _contains, deterministic=True)

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
