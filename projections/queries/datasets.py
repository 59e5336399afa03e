"""Queries on the training dataset's read model (``dataset_trees``, its tracking row)."""

from __future__ import annotations

import sqlite3
from typing import Any

_KEY = (
    "SELECT (SELECT position FROM tracking WHERE projection = ?),"
    " count(*), max(ready_position), max(changed_position) FROM dataset_trees"
)


def change_key(conn: sqlite3.Connection, projection: str) -> tuple[Any, ...] | None:
    """(projection position, trees, latest ready, latest change): equal keys, same
    dataset; None while the projection has not run (no table or no position yet)."""
    try:
        row = conn.execute(_KEY, (projection,)).fetchone()
    except sqlite3.OperationalError:  # no training projection yet
        return None
    return tuple(row) if row and row[0] is not None else None
