"""A sliding-window log of admitted requests shared by every server process of a store.

The same rule as the in-process limiter (api.http.ratelimit): a key may have at most
``times`` admissions in any ``seconds`` long window, a refused request records nothing,
and the rules of one request are checked and recorded together. Check and record are one
transaction, so two processes never both take the last admission of a window:

- one machine (the SQLite store): ``<data>/ratelimit.sqlite``, written under SQLite's
  write lock (``BEGIN IMMEDIATE``); WAL with ``synchronous=NORMAL`` (no fsync per commit:
  a power cut only forgets some recent requests, and never corrupts the file);
- many machines (the PostgreSQL store): a table beside the log, the keys locked with
  transaction-level advisory locks (in sorted order, so two requests never deadlock).

Times are wall-clock seconds (``time.time``): processes do not share a monotonic clock.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, Protocol

from api.storage.logdb import Location
from api.storage.pg_url import create_tables, is_postgres, split_url, thread_connection

RATE_FILE = "ratelimit.sqlite"
SWEEP_EVERY = 4096  # admissions between sweeps of every key's expired rows


class RuleLike(Protocol):
    @property
    def times(self) -> int: ...

    @property
    def seconds(self) -> float: ...


Checks = Sequence[tuple[Hashable, RuleLike]]


def _wait(rows: list[float], rule: RuleLike, now: float) -> float:
    """Seconds until a window holding admissions ``rows`` (ascending) admits one more."""
    if len(rows) < rule.times:
        return 0.0
    return rows[len(rows) - rule.times] + rule.seconds - now


class SQLiteRateLog:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        self.path, self.clock = Path(path), clock
        self._local = threading.local()
        self._admitted = 0
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS hits (key TEXT NOT NULL, at REAL NOT NULL)")
        conn.execute("CREATE INDEX IF NOT EXISTS hits_key_at ON hits (key, at)")
        conn.execute("CREATE INDEX IF NOT EXISTS hits_at ON hits (at)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per commit
            self._local.conn = conn
        return conn

    def admit(self, checks: Checks, horizon: float = 86_400.0) -> float:
        """Record one request under every (key, rule) and return 0, or record nothing and
        return the seconds until all would admit it."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            now, wait = self.clock(), 0.0
            for key, rule in checks:
                rows = [
                    at
                    for (at,) in conn.execute(
                        "SELECT at FROM hits WHERE key = ? AND at > ? ORDER BY at",
                        (repr(key), now - rule.seconds),
                    )
                ]
                wait = max(wait, _wait(rows, rule, now))
            if wait <= 0:
                for key, rule in checks:
                    conn.execute(
                        "DELETE FROM hits WHERE key = ? AND at <= ?",
                        (repr(key), now - rule.seconds),
                    )
                    conn.execute("INSERT INTO hits VALUES (?, ?)", (repr(key), now))
                self._admitted += 1
                if self._admitted % SWEEP_EVERY == 0:  # keys nobody asked for again
                    conn.execute("DELETE FROM hits WHERE at <= ?", (now - horizon,))
            conn.execute("COMMIT")
            return max(wait, 0.0)
        except BaseException:
            conn.execute("ROLLBACK")
            raise


class PostgresRateLog:
    TABLE = "dataengine_rate_hits"

    def __init__(self, url: str, clock: Callable[[], float] = time.time):
        import psycopg

        self.libpq, self.schema = split_url(url)
        self.clock = clock
        self._local = threading.local()
        self._admitted = 0
        with psycopg.connect(self.libpq, autocommit=True) as conn:
            create_tables(
                conn,
                self.schema,
                f"CREATE TABLE IF NOT EXISTS {self._table} (key text NOT NULL, at float8 NOT NULL)",
                f"CREATE INDEX IF NOT EXISTS rate_hits_key_at ON {self._table} (key, at)",
            )

    @property
    def _table(self) -> str:
        return f'"{self.schema}".{self.TABLE}'

    def _conn(self) -> Any:
        return thread_connection(self._local, self.libpq)

    def admit(self, checks: Checks, horizon: float = 86_400.0) -> float:
        conn, table = self._conn(), self._table
        keys = sorted({repr(key) for key, _ in checks})
        try:
            with conn.transaction():
                for name in keys:  # sorted: two requests take shared keys in one order
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        (f"{self.schema}:{name}",),
                    )
                now, wait = self.clock(), 0.0
                for key, rule in checks:
                    rows = [
                        at
                        for (at,) in conn.execute(
                            f"SELECT at FROM {table} WHERE key = %s AND at > %s ORDER BY at",
                            (repr(key), now - rule.seconds),
                        )
                    ]
                    wait = max(wait, _wait(rows, rule, now))
                if wait <= 0:
                    for key, rule in checks:
                        conn.execute(
                            f"DELETE FROM {table} WHERE key = %s AND at <= %s",
                            (repr(key), now - rule.seconds),
                        )
                        conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (repr(key), now))
                    self._admitted += 1
                    if self._admitted % SWEEP_EVERY == 0:
                        conn.execute(f"DELETE FROM {table} WHERE at <= %s", (now - horizon,))
        except Exception:
            if conn.broken:
                self._local.conn = None
            raise
        return max(wait, 0.0)


def rate_log_for(folder: Path, location: Location) -> SQLiteRateLog | PostgresRateLog:
    """The shared rate log for the store at ``location`` (its data folder for SQLite)."""
    if is_postgres(location):
        return PostgresRateLog(str(location))
    return SQLiteRateLog(Path(folder) / RATE_FILE)
