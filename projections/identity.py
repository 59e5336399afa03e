"""Which log a read model is the projection of, and setting aside one that is not ours.

A read model records, with every batch it applies (same transaction as its tracking),
the position and fingerprint (sha256 of the stored row) of the last event it projected:
another store's log, or a rewritten one, has another event there. Before serving, and on every health check, those are compared with the
log: a read model ahead of the log (a restored backup of the read model, or an older log
put back), from another store, over a rewritten log, truncated or corrupt (``PRAGMA
quick_check``) is not the log's. At start-up such a file is set aside (renamed, with its
WAL, kept for inspection) and rebuilt from the log, with one warning line saying why.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from projections.log import LogSource, Row, text_id

log = logging.getLogger("dataengine.readmodel")

DDL = (
    "CREATE TABLE IF NOT EXISTS log_identity ("
    "mark TEXT PRIMARY KEY, position INTEGER NOT NULL, fingerprint TEXT NOT NULL)"
)


def fingerprint(row: Row) -> str:
    position, originator_id, version, topic, state = row
    head = f"{position}|{text_id(originator_id)}|{version}|{text_id(topic)}|".encode()
    body = state if isinstance(state, bytes) else str(state).encode()
    return hashlib.sha256(head + body).hexdigest()


def record(cursor: Any, rows: Any) -> None:
    """Called by the runner inside a batch's transaction."""
    cursor.execute(
        "INSERT OR REPLACE INTO log_identity VALUES ('head', ?, ?)",
        (rows[-1][0], fingerprint(rows[-1])),
    )


def _row_at(source: LogSource, position: int) -> Row | None:
    rows = source.read(position - 1, 1)
    return rows[0] if rows and rows[0][0] == position else None


def mismatch(conn: sqlite3.Connection, source: LogSource, *, quick_check: bool) -> str | None:
    """Why the read model on ``conn`` is not the projection of ``source``; None if it is."""
    if quick_check:
        found = conn.execute("PRAGMA quick_check").fetchone()[0]
        if found != "ok":
            return f"it is corrupt (quick_check: {found})"
    try:
        tracked = conn.execute("SELECT max(position) FROM tracking").fetchone()[0] or 0
        marks = {m: (p, f) for m, p, f in conn.execute("SELECT * FROM log_identity")}
    except sqlite3.OperationalError:
        return None  # a new file, or one from before identities were recorded
    head = source.head()
    if tracked > head:
        return f"it is ahead of the log (position {tracked}, the log ends at {head})"
    if "head" not in marks:
        return None
    position, expected = marks["head"]
    row = _row_at(source, position)
    if row is None:
        return f"the log has no event at its position {position}"
    if fingerprint(row) != expected:
        return (
            f"the log's event at its position {position} is not the one it projected "
            "(another store's read model, or a rewritten log)"
        )
    return None


def check(path: Path, source: LogSource) -> str | None:
    """``mismatch`` on the file at ``path`` (None when there is no file)."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        return f"it cannot be opened ({e})"
    try:
        return mismatch(conn, source, quick_check=True)
    except sqlite3.DatabaseError as e:
        return f"it cannot be read ({e})"
    finally:
        conn.close()


def set_aside(path: Path, reason: str) -> Path:
    """Rename the file (and its WAL and shared-memory files) out of the way; the new name."""
    aside = path.with_name(f"{path.name}.set-aside-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        found = Path(f"{path}{suffix}")
        if found.exists():
            found.rename(Path(f"{aside}{suffix}"))
    log.warning(
        "%s does not belong to this log: %s; set aside as %s, rebuilding", path, reason, aside
    )
    return aside


def ensure_own(path: Path, source: LogSource) -> str | None:
    """Set the read model at ``path`` aside when it is not ``source``'s; the reason, if so."""
    reason = check(path, source)
    if reason is not None:
        set_aside(path, reason)
    return reason
