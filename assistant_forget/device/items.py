"""The item database of a module family: one SQLite file, DIR/items.sqlite, that can forget without a trace.

A plain `torch.nn.Module` family (families/module.py) trains on keyed items instead of utterances. Each row
is an `Item`: an id, the key that groups it (what a local day is on the assistant: the unit the ledger keeps
one delta for) and an opaque payload (the family's encoded tensors). Everything that reads items gets them
in one order, (key, id), so that training never depends on insertion order; keys and ids are ASCII
(`core.family.check_key`), so SQLite's byte order is Python's string order.

The file is a `sqlite.SecureStore`, with exactly the log's guarantees: deletion leaves nothing behind on
disk (`secure_delete`, and `purge()`: checkpoint + truncate the write-ahead log, VACUUM, checkpoint again),
WAL with one writer and any number of readers, read-only handles that never change a file (on a missing file:
an empty store), the schema checked on every open against this module's migrations, SQLite's failures
reported as the library's errors. Callers that delete several selectors pass `purge=False` and call
`purge()` once at the end.

The method names and their meaning are the log's (`store.LogStore`), so the forgetting runner, the selectors
and the tombstones treat both alike: a "day" is a key, `by_range(first, last)` takes the keys between two
keys in string order, and `Item.local_date` is its key. Items hold tensors, not text: `matching` refuses,
and a forget selects by key or by item id.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from ..core.errors import BadInput
from ..core.keys import check_key
from .sqlite import IN_IDS, Migration, SecureStore, ids_json, sqlite_errors

__all__ = ["ITEMS_FILE", "Item", "ItemStore"]

ITEMS_FILE = "items.sqlite"  # the device directory's item database

_NO_TEXT = "items hold tensors, not text: forget by key or item id"


@dataclass(frozen=True)
class Item:
    """One stored item: `id` unique in the store, `key` its group (a day on the assistant), `payload` bytes."""

    id: str
    key: str
    payload: bytes

    @property
    def local_date(self) -> str:
        """The item's key: the forgetting runner groups rows by `.local_date`, as it does utterances by day."""
        return self.key


def item_problems(item: object) -> list[str]:
    """What is wrong with `item` as a row to store, as readable phrases (empty: nothing)."""
    if not isinstance(item, Item):
        return [f"{item!r:.60} is not an Item"]
    problems = []
    for what, value in (("item id", item.id), ("key", item.key)):
        try:
            check_key(value, what)
        except BadInput as e:
            problems.append(str(e))
    if not isinstance(item.payload, bytes):
        problems.append(f"payload must be bytes, got {type(item.payload).__name__}")
    return problems


# -- schema migrations ----------------------------------------------------------------------------

def _v1_items(conn: sqlite3.Connection) -> None:
    """Version 1: the item table, indexed for key and range queries in reading order."""
    conn.execute("""CREATE TABLE items (
        id TEXT PRIMARY KEY NOT NULL,
        key TEXT NOT NULL,
        payload BLOB NOT NULL)""")
    conn.execute("CREATE INDEX items_by_key ON items (key, id)")


MIGRATIONS: list[Migration] = [_v1_items]  # MIGRATIONS[i] upgrades a database from version i to i + 1


# -- the store ------------------------------------------------------------------------------------

_COLUMNS = "id, key, payload"
_ORDER = "ORDER BY key, id"
_INSERT = "INSERT INTO items (id, key, payload) VALUES (?, ?, ?)"
_IN_KEYS = "key IN (SELECT value FROM json_each(?))"  # keys travel as one bound JSON array


class ItemStore(SecureStore):
    """Handle on a device's item database. Use as a context manager; `readonly=True` never writes.

    A read-only handle on a missing file behaves as an empty store and creates nothing.
    """

    KIND = "item database"
    EMPTY = "an empty item store"
    TABLE = "items"

    @classmethod
    def migrations(cls) -> list[Migration]:
        """This module's MIGRATIONS, looked up on each call."""
        return MIGRATIONS

    # -- reading -----------------------------------------------------------------------------
    def _select(self, where: str, params: tuple = ()) -> list[Item]:
        rows = self._conn.execute(f"SELECT {_COLUMNS} FROM items WHERE {where} {_ORDER}", params).fetchall()
        return [Item(*row) for row in rows]  # built after the read ends: shorter read locks

    @sqlite_errors
    def count(self) -> int:
        """Number of stored items."""
        return int(self._conn.execute("SELECT count(*) FROM items").fetchone()[0])

    @sqlite_errors
    def day_counts(self) -> dict[str, int]:
        """Items per key, keys in ascending order ({'user-17': 41, ...})."""
        rows = self._conn.execute("SELECT key, count(*) FROM items GROUP BY key ORDER BY key")
        return {key: n for key, n in rows}

    @sqlite_errors
    def all(self) -> list[Item]:
        """Every item, in reading order (key, id)."""
        return self._select("1")

    @sqlite_errors
    def by_day(self, key: str) -> list[Item]:
        """The items of one key."""
        return self._select("key = ?", (check_key(key),))

    @sqlite_errors
    def by_range(self, first: str, last: str) -> list[Item]:
        """The items of the keys first..last in string order, both included."""
        return self._select("key BETWEEN ? AND ?", _key_range(first, last))

    @sqlite_errors
    def before(self, key: str) -> list[Item]:
        """The items of every key strictly before `key` in string order."""
        return self._select("key < ?", (check_key(key),))

    @sqlite_errors
    def by_ids(self, ids: Iterable[str]) -> list[Item]:
        """The stored items among `ids` (unknown ids are skipped; compare lengths to detect them)."""
        return self._select(IN_IDS, (ids_json(ids),))

    @sqlite_errors
    def by_keys(self, keys: Iterable[str]) -> list[Item]:
        """The items of these keys (keys without items add nothing)."""
        return self._select(_IN_KEYS, (_keys_json(keys),))

    @sqlite_errors
    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of `ids` are already stored."""
        rows = self._conn.execute(f"SELECT id FROM items WHERE {IN_IDS}", (ids_json(ids),))
        return {uid for (uid,) in rows}

    def matching(self, text: str) -> list[Item]:
        """Refused: an item's payload is tensors, there is no text to match."""
        raise BadInput(_NO_TEXT)

    # -- writing -----------------------------------------------------------------------------
    @sqlite_errors
    def add(self, items: Iterable[Item]) -> int:
        """Store items in one transaction: all are stored or none. Returns how many."""
        self._require_writer()
        batch = list(items)
        problems = [f"item {getattr(it, 'id', None)!r}: {p}" for it in batch for p in item_problems(it)]
        if problems:
            raise BadInput(f"{len(problems)} problem(s), nothing was added: " + "; ".join(problems[:10]))
        ids = [it.id for it in batch]
        dupes = [f"id {uid!r} appears {n} times in the batch" for uid, n in Counter(ids).items() if n > 1]
        if dupes:
            raise BadInput(f"{len(dupes)} problem(s), nothing was added: " + "; ".join(dupes[:10]))
        try:
            with self._transaction():
                self._conn.executemany(_INSERT, [(it.id, it.key, it.payload) for it in batch])
        except sqlite3.IntegrityError:
            taken = sorted(self.existing_ids(ids))
            raise BadInput(f"{len(taken)} id(s) are already in the store (e.g. {taken[:3]}); "
                           "nothing was added") from None
        return len(batch)

    @sqlite_errors
    def delete_day(self, key: str, purge: bool = True) -> int:
        """Delete one key's items (then purge, unless told not to). Returns how many."""
        return self._delete("key = ?", (check_key(key),), purge)

    @sqlite_errors
    def delete_range(self, first: str, last: str, purge: bool = True) -> int:
        """Delete the items of the keys first..last in string order, both included. Returns how many."""
        return self._delete("key BETWEEN ? AND ?", _key_range(first, last), purge)

    @sqlite_errors
    def delete_ids(self, ids: Iterable[str], purge: bool = True) -> int:
        """Delete the items with these ids (unknown ids are ignored). Returns how many."""
        return self._delete(IN_IDS, (ids_json(ids),), purge)

    def delete_matching(self, text: str, purge: bool = True) -> int:
        """Refused, as `matching`: nothing is deleted."""
        raise BadInput(_NO_TEXT)


def _key_range(first: str, last: str) -> tuple[str, str]:
    """An inclusive range of keys in string order; `first` may equal `last` but not follow it."""
    first, last = check_key(first, "first key"), check_key(last, "last key")
    if first > last:
        raise BadInput(f"key range {first} .. {last} is empty: the first key sorts after the last")
    return first, last


def _keys_json(keys: Iterable[str]) -> str:
    """Keys as one JSON array, each checked, to bind as a single SQL parameter."""
    keys = [keys] if isinstance(keys, str) else list(keys)
    for key in keys:
        check_key(key)
    return ids_json(keys)
