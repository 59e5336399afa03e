"""The hand-out's claims shared by every server process of a store.

A claim names a target a process has handed out (a reply parent, a message to review or
rank) whose TaskIssued another process's read model may not show yet. One decision at a
time among all processes: the claims not yet in the deciding process's read model are
read, the choice made and its claim written in one transaction, so two processes never
both take the last slot. A claim's ``bound`` is the log position at or after its
TaskIssued (NULL while issuing); a read model at or past it counts the task itself.
Claims are forgotten after ``KEEP`` seconds: by then every read model has the task (or
the issuing process died and the task was never recorded).

- one machine (the SQLite store): ``<data>/claims.sqlite`` under ``BEGIN IMMEDIATE``;
- many machines (PostgreSQL): a table beside the log, under one transaction-level
  advisory lock.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.storage.logdb import Location
from api.storage.pg_url import create_tables, is_postgres, split_url, thread_connection

CLAIMS_FILE = "claims.sqlite"
KEEP = 120.0
Row = tuple[str, str, str]  # message id, user id, kind
# choose(unseen claims) -> (whatever the caller decided, the claim to record or None)
Choose = Callable[[list[Row]], tuple[Any, Row | None]]


class SQLiteClaimLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS claims (id INTEGER PRIMARY KEY, message_id TEXT NOT NULL,"
            " user_id TEXT NOT NULL, kind TEXT NOT NULL, bound INTEGER, at REAL NOT NULL)"
        )

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per commit
            self._local.conn = conn
        return conn

    def decide(self, seen: int, choose: Choose) -> tuple[Any, int | None]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = time.time()
            conn.execute("DELETE FROM claims WHERE at < ?", (now - KEEP,))
            unseen = conn.execute(
                "SELECT message_id, user_id, kind FROM claims WHERE bound IS NULL OR bound > ?",
                (seen,),
            ).fetchall()
            decided, claim = choose(unseen)
            claim_id = None
            if claim is not None:
                claim_id = conn.execute(
                    "INSERT INTO claims (message_id, user_id, kind, at) VALUES (?, ?, ?, ?)",
                    (*claim, now),
                ).lastrowid
            conn.execute("COMMIT")
            return decided, claim_id
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def settle(self, claim_id: int, bound: int | None) -> None:
        conn = self._conn()
        if bound is None:
            conn.execute("DELETE FROM claims WHERE id = ?", (claim_id,))
        else:
            conn.execute("UPDATE claims SET bound = ? WHERE id = ?", (bound, claim_id))


class PostgresClaimLog:
    TABLE = "dataengine_handout_claims"

    def __init__(self, url: str):
        import psycopg

        self.libpq, self.schema = split_url(url)
        self.table = f'"{self.schema}".{self.TABLE}'
        self._local = threading.local()
        with psycopg.connect(self.libpq, autocommit=True) as conn:
            create_tables(
                conn,
                self.schema,
                f"CREATE TABLE IF NOT EXISTS {self.table} (id bigserial PRIMARY KEY,"
                " message_id text NOT NULL, user_id text NOT NULL, kind text NOT NULL,"
                " bound bigint, at float8 NOT NULL)",
            )

    def _conn(self) -> Any:
        return thread_connection(self._local, self.libpq)

    def decide(self, seen: int, choose: Choose) -> tuple[Any, int | None]:
        conn, table = self._conn(), self.table
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"dataengine:{self.schema}:handout",),
            )
            now = time.time()
            conn.execute(f"DELETE FROM {table} WHERE at < %s", (now - KEEP,))
            unseen = conn.execute(
                f"SELECT message_id, user_id, kind FROM {table} WHERE bound IS NULL OR bound > %s",
                (seen,),
            ).fetchall()
            decided, claim = choose([tuple(r) for r in unseen])
            claim_id = None
            if claim is not None:
                claim_id = conn.execute(
                    f"INSERT INTO {table} (message_id, user_id, kind, at)"
                    " VALUES (%s, %s, %s, %s) RETURNING id",
                    (*claim, now),
                ).fetchone()[0]
        return decided, claim_id

    def settle(self, claim_id: int, bound: int | None) -> None:
        conn = self._conn()
        if bound is None:
            conn.execute(f"DELETE FROM {self.table} WHERE id = %s", (claim_id,))
        else:
            conn.execute(f"UPDATE {self.table} SET bound = %s WHERE id = %s", (bound, claim_id))


def claim_log_for(folder: Path, location: Location) -> SQLiteClaimLog | PostgresClaimLog:
    if is_postgres(location):
        return PostgresClaimLog(str(location))
    return SQLiteClaimLog(Path(folder) / CLAIMS_FILE)
