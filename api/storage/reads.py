"""Reads on the event loop: a small pool of aiosqlite connections to one SQLite file.

The HTTP service keeps two: the read model (every GET answer) and the event store (log
head, a tree's events). Each connection is opened at start-up with ``query_only`` on a
WAL file, so a reader never takes a write lock and never waits for the projection
runner's or the committers' writes (nor they for it). A query is handed to the
connection's own thread and its rows come back to the loop: the threadpool stays for
commands, and the GIL-heavy hand-off of the threadpool is not paid for reads.

Connections are lent one at a time (an asyncio queue), so at most ``size`` queries run
at once, each on its own SQLite connection and thread.

Every reading connection of the server (these, and the command threads' own) maps the
file into memory (``READ_PRAGMAS``): with SQLite's default 2 MB page cache per
connection, the three pool queries of one hand-out evicted each other's pages on a
1,650-tree read model, and the pools took 1.7 ms instead of 1.0 ms. A mapping is shared
by all connections through the OS page cache, so it costs no memory per connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

R = TypeVar("R")
DEFAULT_SIZE = 4
READ_PRAGMAS = ("query_only = ON", "mmap_size = 1073741824")


def connect_reader(path: Path | str) -> sqlite3.Connection:
    """A plain read-only connection with the read pragmas (for the command threads)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    for pragma in READ_PRAGMAS:
        conn.execute(f"PRAGMA {pragma}")
    return conn


class ReadPool:
    def __init__(self, path: Path | str, size: int = DEFAULT_SIZE):
        self.path = Path(path)
        self.size = size
        self._all: list[aiosqlite.Connection] = []
        self._idle: asyncio.Queue[aiosqlite.Connection] | None = None

    async def open(self) -> ReadPool:
        idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        try:
            for _ in range(self.size):
                conn = await aiosqlite.connect(self.path, isolation_level=None, timeout=30)
                self._all.append(conn)
                # WAL is a property of the file (the writers set it); query_only makes any
                # write through this connection an error instead of a lock.
                for pragma in READ_PRAGMAS:
                    await conn.execute(f"PRAGMA {pragma}")
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

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        idle = self._idle
        if idle is None:
            raise RuntimeError(f"the read pool on {self.path.name} is not open")
        conn = await idle.get()
        try:
            yield conn
        finally:
            idle.put_nowait(conn)

    async def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple]:
        async with self.connection() as conn:
            return [tuple(r) for r in await conn.execute_fetchall(sql, params)]

    async def row(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> tuple | None:
        found = await self.rows(sql, params)
        return found[0] if found else None

    async def run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """``fn(sqlite3_connection, *args, **kwargs)`` on a pooled connection's thread.

        For the read functions the projections share with the CLI (leaderboards,
        availability, agreement), which take a plain sqlite3 connection. aiosqlite runs
        every call this way; it has no public name for it, hence ``_execute``."""
        async with self.connection() as conn:
            return await conn._execute(lambda: fn(conn._conn, *args, **kwargs))
