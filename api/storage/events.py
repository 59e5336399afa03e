"""Where the event log lives: the SQLite store with group commit, and the data folder.

Group commit: every commit of the log pays one fsync (WAL, synchronous=FULL: nothing
acknowledged is lost, even on power failure). Concurrent requests therefore share
commits: the first writer to find no commit in progress becomes the committer and
writes every pending request at once, then the next committer takes what queued
meanwhile. A lone writer commits at once.

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
import threading
import weakref
from collections.abc import Sequence
from typing import Any
from uuid import UUID

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
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder

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


class _Pending:
    """One save waiting for a commit. wake is released when it is done, or when its
    thread is to commit the queue (lead): only those threads wake, never the others."""

    __slots__ = ("rows", "ids", "error", "lead", "wake")

    def __init__(self, rows: list[Row]):
        self.rows = rows
        self.ids: list[int] | None = None
        self.error: BaseException | None = None
        self.lead = False
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommitSQLiteRecorder(SQLiteApplicationRecorder):
    max_batch = 512  # requests per commit

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._mutex = threading.Lock()
        self._queue: list[_Pending] = []
        self._committing = False
        self.synchronous = "FULL"  # open_app sets it before the first commit
        self._conn: sqlite3.Connection | None = None
        self._statements: dict[int, str] = {}
        self._max_rows = 249  # rows per INSERT; raised to the connection's variable limit
        # commits and the requests they carried: requests / commits is the mean batch size
        self.stats = {"commits": 0, "requests": 0, "max_batch": 0}

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        request = _Pending(
            [
                (
                    s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
                    s.originator_version,
                    s.topic,
                    s.state,
                )
                for s in stored_events
            ]
        )
        if not request.rows:
            return []
        with self._mutex:
            self._queue.append(request)
            request.lead = not self._committing
            self._committing = True
        if not request.lead:
            request.wake.acquire()  # until a committer stored it, or made this thread lead
        if request.lead:  # its request is first in the queue, so in the batch
            self._lead()
        if request.error is not None:
            raise request.error
        return request.ids

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _lead(self) -> None:
        with self._mutex:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        successor = None
        try:
            self._commit(batch)
        finally:
            with self._mutex:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                else:
                    self._committing = False
            for item in batch:
                if item.ids is None and item.error is None:
                    item.error = RuntimeError("the commit was interrupted")
                if not item.lead:
                    item.wake.release()
            if successor is not None:
                successor.wake.release()

    def _commit(self, batch: list[_Pending]) -> None:
        stats = self.stats
        stats["commits"] += 1
        stats["requests"] += len(batch)
        stats["max_batch"] = max(stats["max_batch"], len(batch))
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

    def _write_batch(self, cursor: Any, batch: list[_Pending]) -> None:
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

    def _write(self, cursor: Any, items: list[_Pending]) -> None:
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
