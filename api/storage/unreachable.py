"""Recognising a failure to reach the PostgreSQL store (down, restarting, unreachable).

Such a failure is transient: the pools reconnect (eventsourcing pre-pings its
connections, the log readers reconnect on their next statement), so the server answers
503 meanwhile and the read models pause and resume by themselves. psycopg reports it as
``OperationalError`` (a lost or refused connection, an administrator shutdown, a pool
that found no connection in time); callers wrap it (eventsourcing, the projection
runner), so the whole cause/context chain is searched. When one was last seen is kept
(per process), so the HTTP edge can answer 503 at once while the store stays down
(api.http.store_down) instead of letting each request wait through the driver's retries.
"""

from __future__ import annotations

import sys
import time

_last_seen: list[float] = []  # monotonic time of the last lost connection seen, if any


def seen_within(seconds: float) -> bool:
    return bool(_last_seen) and time.monotonic() - _last_seen[0] < seconds


def clear() -> None:
    """The store answered again."""
    _last_seen.clear()


def store_unreachable(exc: BaseException | None) -> bool:
    """True when ``exc`` or anything it was raised from is a lost PostgreSQL connection."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:  # never imported: the store is SQLite
        return False
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, psycopg.OperationalError):
            _last_seen[:] = [time.monotonic()]
            return True
        exc = exc.__cause__ or exc.__context__
    return False
