"""Reads of the event log on the event loop, on either store.

SQLite: ``ReadPool`` (aiosqlite) on events.sqlite. PostgreSQL: ``PostgresReadPool``, a
few psycopg async connections lent one at a time, taking the same SQL as the SQLite pool
(api.storage.logdb maps the names). Both have ``rows``/``row``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

from api.storage.logdb import Location, log_translator
from api.storage.pg_url import is_postgres, split_url
from api.storage.reads import ReadPool


class PostgresReadPool:
    def __init__(self, url: str, size: int = 2):
        self.url, self.size = url, size
        self._libpq, schema = split_url(url)
        self._translate = log_translator(schema)
        self._all: list[Any] = []
        self._idle: asyncio.Queue[Any] | None = None

    async def open(self) -> PostgresReadPool:
        from psycopg import AsyncConnection

        idle: asyncio.Queue[Any] = asyncio.Queue()
        try:
            for _ in range(self.size):
                conn = await AsyncConnection.connect(self._libpq, autocommit=True)
                self._all.append(conn)
                idle.put_nowait(conn)
        except BaseException:
            await self.close()
            raise
        self._idle = idle
        return self

    async def close(self) -> None:
        conns, self._all, self._idle = self._all, [], None
        for conn in conns:
            await conn.close()

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        import psycopg

        idle = self._idle
        if idle is None:
            raise RuntimeError("the log's read pool is not open")
        conn = await idle.get()
        try:
            if conn.closed or conn.broken:  # the server restarted: reconnect once
                conn = await psycopg.AsyncConnection.connect(self._libpq, autocommit=True)
            try:
                cursor = await conn.execute(self._translate(sql), list(params))
                found = await cursor.fetchall()
            except psycopg.errors.UndefinedTable as e:
                raise sqlite3.OperationalError(f"no such table: stored_events ({e})") from e
            return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in found]
        finally:
            idle.put_nowait(conn)

    async def row(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        found = await self.rows(sql, params)
        return found[0] if found else None


async def open_log_reads(location: Location, size: int = 2) -> ReadPool | PostgresReadPool:
    """An open pool of the log's readers for the event loop."""
    if is_postgres(location):
        return await PostgresReadPool(str(location), size).open()
    return await ReadPool(location, size).open()
