"""Recognising a write that failed for lack of disk space.

SQLite answers SQLITE_FULL ("database or disk is full") when a page cannot be written and
the OS ENOSPC ("No space left on device") when a file cannot grow; PostgreSQL answers
SQLSTATE 53100 (disk_full), whatever language its messages are in. All are transient: the
same write succeeds once space returns. Callers wrap the driver's error (eventsourcing,
the projection runner), so the whole cause/context chain is searched.
"""

from __future__ import annotations

import errno
import sqlite3

SQLITE_FULL = 13
PG_DISK_FULL = "53100"  # psycopg's errors carry the server's SQLSTATE as ``sqlstate``


def disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` or anything it was raised from is a full disk."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL:
            return True
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if getattr(exc, "sqlstate", None) == PG_DISK_FULL:
            return True
        text = str(exc).lower()
        if "database or disk is full" in text or "no space left on device" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
