"""A write-back cache of one table's rows for a projection's batches.

Handlers read a row once (one primary-key lookup), change it in memory as often as the
events say, and ``flush`` writes every new row with one executemany INSERT and every
changed row with one executemany UPDATE of its mutable columns. A flushed row stays
cached: the projection is its table's only writer, so the row still matches the table
in the next batch (a message is reviewed and ranked long after it was written). The
cache is emptied on rollback, when the cursor belongs to another connection, and when
it holds more than ``limit`` rows at a batch's start (memory); the rows written are the
same however the log was cut into batches.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any


class RowCache:
    def __init__(
        self,
        table: str,
        columns: Sequence[str],
        mutable: Sequence[str],
        *,
        clustered: bool = False,
        limit: int = 50_000,
    ):
        """``clustered``: a WITHOUT ROWID table, whose rows are stored in key order: new rows
        are inserted sorted by key (neighbours share pages); a rowid table gets them in
        the order they were added, so its rowids are the same as one by one."""
        self.table = table
        self.clustered = clustered
        self.limit = limit
        self.columns = tuple(columns)
        key = self.columns[0]  # the primary key comes first
        self._select = f"SELECT {', '.join(columns)} FROM {table} WHERE {key} = ?"
        self._insert = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        )
        self._update = (
            f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in mutable)} WHERE {key} = ?"
        )
        self._mutable = [self.columns.index(c) for c in mutable]
        self.rows: dict[Any, list[Any] | None] = {}
        self.new: dict[Any, None] = {}  # insertion order: the same rowids as one by one
        # Keys of changed rows: handlers add to it directly (the hot path); new rows in
        # it are written by their INSERT.
        self.changed: set[Any] = set()
        self.cursor: sqlite3.Cursor | None = None

    def begin(self, cursor: sqlite3.Cursor) -> None:
        if (
            self.cursor is None
            or cursor.connection is not self.cursor.connection
            or len(self.rows) > self.limit
            or self.pending
        ):
            self.discard()
        self.cursor = cursor

    def get(self, key: Any) -> list[Any] | None:
        """The row (a list in column order) or None; add its key to ``changed`` after
        changing it."""
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
            raise sqlite3.IntegrityError(
                f"UNIQUE constraint failed: {self.table}.{self.columns[0]}"
            )
        self.rows[key] = row
        self.new[key] = None

    @property
    def pending(self) -> bool:
        return bool(self.new or self.changed)

    def flush(self) -> None:
        cursor, rows = self.cursor, self.rows
        assert cursor is not None, "begin() first"
        new = self.new
        if self.changed:
            mutable = self._mutable
            # Sorted: a fixed order, and neighbouring keys share B-tree pages.
            cursor.executemany(
                self._update,
                [
                    [row[i] for i in mutable] + [k]
                    for k in sorted(self.changed.difference(new))
                    if (row := rows[k]) is not None
                ],
            )
            self.changed.clear()
        if new:
            cursor.executemany(
                self._insert,
                [
                    row
                    for k in (sorted(new) if self.clustered else new)
                    if (row := rows[k]) is not None
                ],
            )
            new.clear()

    def discard(self) -> None:
        self.rows.clear()
        self.new.clear()
        self.changed.clear()
        self.cursor = None
