"""Read-only access to the event log's table, on either store.

The readers of the log (projection runner, audit chain, dataset builds, exports, history)
query its table directly, with plain SQL written once against the SQLite names:
``stored_events`` and its ``rowid`` (the position). ``connect_log`` opens a location,
either an events.sqlite file or a ``postgresql://`` URL, and hands back a connection whose
``execute`` takes that SQL on both: on PostgreSQL, ``LogConnection`` maps the table and
position names, the ``?`` parameters and a missing table (reported as sqlite3's
"no such table", which the readers already treat as an empty log). Rows come back with
the same Python types on both stores (id text, int, topic text, state bytes), so what is
computed from them (views, digests, datasets) is the same.

Where the log is: ``DATAENGINE_STORE`` (a PostgreSQL URL) when set, else the data
folder's events.sqlite (``log_location``).
"""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from api.storage.events import EVENTS_FILE
from api.storage.pg_url import EVENTS_TABLE, is_postgres, split_url

Location = str | Path
STREAM_ROWS = 5000  # rows per round trip when a result is streamed


def store_url(environ: dict[str, str] | None = None) -> str | None:
    """The PostgreSQL store named by DATAENGINE_STORE (None: the SQLite default)."""
    value = (os.environ if environ is None else environ).get("DATAENGINE_STORE", "").strip()
    if not value or value.lower() == "sqlite":
        return None
    if not is_postgres(value):
        raise ValueError(f"DATAENGINE_STORE must be a postgresql:// URL or 'sqlite', not {value!r}")
    return value


def log_location(folder: str | os.PathLike[str]) -> Location:
    """Where the log of this data folder is: the configured PostgreSQL store, or the file."""
    return store_url() or Path(folder) / EVENTS_FILE


def log_exists(location: Location) -> bool:
    if is_postgres(location):
        conn = connect_log(location)
        try:
            return conn is not None and conn.table_exists()
        finally:
            if conn is not None:
                conn.close()
    return Path(location).exists()


def describe(location: Location) -> str:
    """The location for messages (a URL without its password)."""
    if is_postgres(location):
        return re.sub(r"://([^:@/]+):[^@/]*@", r"://\1:***@", str(location))
    return str(location)


def connect_log(location: Location) -> Any:
    """A read-only connection to the log (None: an SQLite file that does not exist yet)."""
    if is_postgres(location):
        return LogConnection(str(location))
    path = Path(location)
    if not path.exists():
        return None
    # A read-only connection never takes the writer's lock; WAL lets it read while
    # the application commits.
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def location_of(conn: Any) -> Location:
    """The location a connection from ``connect_log`` reads."""
    if isinstance(conn, LogConnection):
        return conn.url
    return Path(conn.execute("PRAGMA database_list").fetchone()[2])


_NAMES = re.compile(r"\bstored_events\b|\browid\b|\?|%")


def log_translator(schema: str) -> Callable[[str], str]:
    """SQL written for the SQLite log -> the same query on the PostgreSQL store's table."""
    names = {
        "stored_events": f'"{schema}"."{EVENTS_TABLE}"',
        "rowid": "notification_id",
        "?": "%s",
        "%": "%%",
    }
    return lambda sql: _NAMES.sub(lambda m: names[m.group(0)], sql)


class _Cursor:
    """Rows of one statement, streamed from the server in chunks.

    A connection streams one statement at a time; when another statement starts before
    this one is read to the end, ``detach`` buffers the rest, so interleaved cursors
    still see every row (as with sqlite3). Threads may share the connection (sqlite3's
    ``check_same_thread=False``): every fetch and the detach hold the connection's lock."""

    def __init__(self, first: tuple | None, stream: Iterator[Any], lock: threading.RLock):
        self._lock = lock
        self._detached = False
        self._rows = self._iterate(first, stream)

    @staticmethod
    def _iterate(first: tuple | None, stream: Iterator[Any]) -> Iterator[tuple]:
        if first is None:
            return
        yield _plain(first)
        for row in stream:
            yield _plain(row)

    def detach(self) -> None:
        with self._lock:
            if not self._detached:
                self._rows = iter(list(self._rows))
                self._detached = True

    def __iter__(self) -> Iterator[tuple]:
        while rows := self.fetchmany(STREAM_ROWS):
            yield from rows

    def fetchone(self) -> tuple | None:
        with self._lock:
            return next(self._rows, None)

    def fetchmany(self, size: int = 1) -> list[tuple]:
        with self._lock:
            return list(itertools.islice(self._rows, size))

    def fetchall(self) -> list[tuple]:
        with self._lock:
            return list(self._rows)


class LogConnection:
    """The events table of a PostgreSQL store, behind the subset of sqlite3's connection
    that the log's readers use (execute, fetch*, iteration, text_factory, close)."""

    def __init__(self, url: str):
        import psycopg

        self.url = url
        libpq, self.schema = split_url(url)
        self._psycopg = psycopg
        self._conn = psycopg.connect(libpq, autocommit=True)
        self._active: _Cursor | None = None
        self._lock = threading.RLock()
        self.text_factory: Any = str  # accepted for sqlite3 compatibility; text is valid UTF-8

        self.translate = log_translator(self.schema)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        psycopg = self._psycopg
        with self._lock:
            self._finish()
            if self._conn.closed or self._conn.broken:  # the server restarted: connect again
                self._conn = psycopg.connect(split_url(self.url)[0], autocommit=True)
            try:
                query = self.translate(sql)
                stream = self._conn.cursor().stream(query, list(params), size=STREAM_ROWS)
                first = next(stream, None)  # errors (a missing table) surface here
            except psycopg.errors.UndefinedTable as e:
                raise sqlite3.OperationalError(f"no such table: stored_events ({e})") from e
            self._active = _Cursor(first, stream, self._lock)
            return self._active

    def _finish(self) -> None:
        """Buffer what the previous statement has left (one stream per connection)."""
        if self._active is not None:
            self._active.detach()
            self._active = None

    def table_exists(self) -> bool:
        with self._lock:
            self._finish()
            row = self._conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f"{self.schema}.{EVENTS_TABLE}",)
            ).fetchone()
        return bool(row and row[0])

    def close(self) -> None:
        with self._lock:
            self._active = None  # an unread rest is dropped with the connection
            self._conn.close()

    def __enter__(self) -> LogConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        pass  # as sqlite3: the block ends a transaction, not the connection


def _plain(row: tuple) -> tuple:
    """bytea may arrive as memoryview: bytes, as sqlite3 gives a BLOB."""
    if any(isinstance(v, memoryview) for v in row):
        return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
    return row
