"""A write-back cache of one table's rows for the length of one projection batch.

Handlers read a row once (one primary-key lookup), change it in memory as often as the
batch's events say, and ``flush`` writes every new row with one executemany INSERT and
every changed row with one executemany UPDATE of its mutable columns. Flushed rows stay
cached (they now match the table) until the batch ends; the cache is emptied at every
batch boundary and on rollback, so it never outlives the transaction it belongs to, and
the rows written are the same however the log was cut into batches.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence


class RowCache:
    def __init__(self, table: str, columns: Sequence[str], mutable: Sequence[str], *,
                 clustered: bool = False):
        """``clustered``: a WITHOUT ROWID table, whose rows are stored in key order: new rows
        are inserted sorted by key (neighbours share pages); a rowid table gets them in
        the order they were added, so its rowids are the same as one by one."""
        self.table = table
        self.clustered = clustered
        self.columns = tuple(columns)
        key = self.columns[0]  # the primary key comes first
        self._select = f"SELECT {', '.join(columns)} FROM {table} WHERE {key} = ?"
        self._insert = (f"INSERT INTO {table} ({', '.join(columns)})"
                        f" VALUES ({', '.join('?' * len(columns))})")
        self._update = (f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in mutable)}"
                        f" WHERE {key} = ?")
        self._mutable = [self.columns.index(c) for c in mutable]
        self.rows: dict[Any, list[Any] | None] = {}
        self._new: dict[Any, None] = {}  # insertion order: the same rowids as one by one
        self._changed: set[Any] = set()
        self.cursor: sqlite3.Cursor | None = None

    def begin(self, cursor: sqlite3.Cursor) -> None:
        self.discard()
        self.cursor = cursor

    def get(self, key: Any) -> list[Any] | None:
        """The row (a list in column order) or None; call ``changed`` after changing it."""
        try:
            return self.rows[key]
        except KeyError:
            pass
        found = self.cursor.execute(self._select, (key,)).fetchone()  # type: ignore[union-attr]
        row = self.rows[key] = None if found is None else list(found)
        return row

    def add(self, row: list[Any]) -> None:
        """A new row. A key already present fails the batch: here if the cache holds it,
        else at the flush's INSERT (no lookup for what is new in the common case)."""
        key = row[0]
        if self.rows.get(key) is not None:
            raise sqlite3.IntegrityError(f"UNIQUE constraint failed: {self.table}.{self.columns[0]}")
        self.rows[key] = row
        self._new[key] = None

    def changed(self, key: Any) -> None:
        if key not in self._new:
            self._changed.add(key)

    @property
    def pending(self) -> bool:
        return bool(self._new or self._changed)

    def flush(self) -> None:
        cursor, rows = self.cursor, self.rows
        assert cursor is not None, "begin() first"
        if self._new:
            cursor.executemany(self._insert, [rows[k] for k in (
                sorted(self._new) if self.clustered else self._new)])
            self._new.clear()
        if self._changed:
            mutable = self._mutable
            # Sorted: a fixed order, and neighbouring keys share B-tree pages.
            cursor.executemany(self._update, [[row[i] for i in mutable] + [k]
                                              for k in sorted(self._changed)
                                              if (row := rows[k]) is not None])
            self._changed.clear()

    def discard(self) -> None:
        self.rows.clear()
        self._new.clear()
        self._changed.clear()
        self.cursor = None
