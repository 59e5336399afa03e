"""Queries on the ``models`` read model (registered models) for the dashboard."""

from __future__ import annotations

import sqlite3


def latest(conn: sqlite3.Connection, limit: int = 50) -> list[tuple]:
    """(name, kind, base_model, dataset_position, metrics JSON, registered_at, path) of the
    latest registered models, newest first."""
    return conn.execute(
        "SELECT name, kind, base_model, dataset_position, metrics, registered_at, path"
        " FROM models ORDER BY registered_at DESC LIMIT ?",
        (limit,),
    ).fetchall()


def path_of(conn: sqlite3.Connection, name: str) -> str | None:
    """The folder a registered model names, or None when no model has that name."""
    row = conn.execute("SELECT path FROM models WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None
