"""Where the event log lives: the SQLite store with group commit, and the data folder.

Group commit (api.storage.group_commit): every commit of the log pays one fsync (WAL,
synchronous=FULL: nothing acknowledged is lost, even on power failure). Concurrent
requests therefore share commits.

The committer writes a batch as ONE multi-row INSERT in autocommit mode: one statement
is one transaction and one fsync, and it hands the GIL to other threads only once. (A
statement per row or a SAVEPOINT per request hands it over at every step, and each time
the committer waits for a busy thread to give it back: that convoy cost more than the
fsync.) SQLite gives the rows of one statement consecutive rowids after the current
maximum, so lastrowid tells every row's position. If the statement fails (a version
conflict, a value SQLite cannot store) nothing of it is stored, and each request of the
batch is retried as its own statement, so the failure fails only its own request. A
request is one statement (or, when too big for one, one BEGIN IMMEDIATE..COMMIT), so no
request is ever half-written. Committers write through their own connection, which keeps
the prepared INSERT of each batch size (the pool's connections keep only one).
"""

from __future__ import annotations

import sqlite3
import weakref
from typing import Any

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder

from api.storage.group_commit import GroupCommit, Pending

EVENTS_FILE = "events.sqlite"

Row = tuple[str, int, str, bytes]


# sqlite3's errors as eventsourcing's (as its own transactions convert them), most specific first
_ERRORS = (
    (sqlite3.IntegrityError, IntegrityError),
    (sqlite3.OperationalError, OperationalError),
    (sqlite3.InterfaceError, InterfaceError),
    (sqlite3.DataError, DataError),
    (sqlite3.InternalError, InternalError),
    (sqlite3.ProgrammingError, ProgrammingError),
    (sqlite3.NotSupportedError, NotSupportedError),
    (sqlite3.DatabaseError, DatabaseError),
    (sqlite3.Error, PersistenceError),
)


def _converted(error: BaseException) -> BaseException:
    for raw, ours in _ERRORS:
        if isinstance(error, raw):
            converted = ours(error)
            converted.__cause__ = error
            return converted
    return error


class GroupCommitSQLiteRecorder(GroupCommit, SQLiteApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._init_group_commit()
        self.synchronous = "FULL"  # open_app sets it before the first commit
        self._conn: sqlite3.Connection | None = None
        self._statements: dict[int, str] = {}
        self._max_rows = 249  # rows per INSERT; raised to the connection's variable limit

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _commit(self, batch: list[Pending]) -> None:
        try:
            if self.datastore.pool.db_name == ":memory:":  # private to the pool's connection
                with self.datastore.get_connection(commit=True) as conn:
                    self._write_batch(conn.cursor(), batch)
            else:
                self._write_batch(self._writer(), batch)
        except BaseException as e:  # noqa: BLE001 - handed to every request not stored
            error = _converted(e)
            for item in batch:
                if item.ids is None and item.error is None:
                    item.error = error

    def _write_batch(self, cursor: Any, batch: list[Pending]) -> None:
        try:
            self._write(cursor, batch)
        except sqlite3.Error:
            if len(batch) == 1:
                raise
            for item in batch:  # alone, each request fails or succeeds on its own merits
                try:
                    self._write(cursor, [item])
                except sqlite3.Error as e:
                    item.error = _converted(e)

    def _writer(self) -> sqlite3.Cursor:
        """The committers' own connection (only the one committer uses it at a time).

        The pool's connections cache one prepared statement, so a batch of another size
        would be prepared again, and preparing hands the GIL over once more."""
        if self._conn is None:
            pool = self.datastore.pool
            conn = sqlite3.connect(
                pool.db_name,
                uri=True,
                check_same_thread=False,
                isolation_level=None,
                cached_statements=256,
                timeout=pool.lock_timeout or 5,
            )
            if not pool.is_sqlite_memory_mode:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            self._max_rows = min(1000, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 4)
            self._conn = conn
            weakref.finalize(self, conn.close)
        return self._conn.cursor()

    def _write(self, cursor: Any, items: list[Pending]) -> None:
        """Store the items' rows atomically and give each item its rows' positions."""
        rows = [row for item in items for row in item.rows]
        if len(rows) <= self._max_rows:
            cursor.execute(self._statement(len(rows)), [v for row in rows for v in row])
            ids = list(range(cursor.lastrowid - len(rows) + 1, cursor.lastrowid + 1))
        else:  # too many for one statement: consecutive statements in one transaction
            ids = []
            cursor.execute("BEGIN IMMEDIATE")
            try:
                for i in range(0, len(rows), self._max_rows):
                    chunk = rows[i : i + self._max_rows]
                    cursor.execute(self._statement(len(chunk)), [v for row in chunk for v in row])
                    ids += range(cursor.lastrowid - len(chunk) + 1, cursor.lastrowid + 1)
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        for item in items:
            item.ids, ids = ids[: len(item.rows)], ids[len(item.rows) :]

    def _statement(self, rows: int) -> str:
        statement = self._statements.get(rows)
        if statement is None:
            statement = (
                f"INSERT INTO {self.events_table_name} "
                "(originator_id, originator_version, topic, state) VALUES "
                + ",".join(["(?,?,?,?)"] * rows)
            )
            if len(self._statements) < 256:
                self._statements[rows] = statement
        return statement
