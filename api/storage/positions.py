"""Log positions of aggregates, read from the SQLite event store."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from uuid import UUID


def last_position(conn: sqlite3.Connection, aggregate_ids: Sequence[UUID]) -> int | None:
    """The log position of the latest event of these aggregates (None: they have none)."""
    if not aggregate_ids:
        return None
    marks = ",".join("?" * len(aggregate_ids))
    row = conn.execute(
        f"SELECT max(rowid) FROM stored_events WHERE originator_id IN ({marks})",
        [i.hex for i in aggregate_ids],
    ).fetchone()
    return row[0] if row else None
