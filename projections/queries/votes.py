"""Queries on the votes read models (``labels``, ``rankings``)."""

from __future__ import annotations

import sqlite3


def per_hour(conn: sqlite3.Connection, since: float) -> dict[int, int]:
    """Labels and rankings per hour (POSIX hour number) since ``since``."""
    counts: dict[int, int] = {}
    for table in ("labels", "rankings"):
        for hour, n in conn.execute(
            f"SELECT CAST(created_at / 3600 AS INTEGER), count(*) FROM {table}"
            " WHERE created_at >= ? GROUP BY 1",
            (since,),
        ):
            counts[hour] = counts.get(hour, 0) + n
    return counts
