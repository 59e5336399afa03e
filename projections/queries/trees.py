"""Queries on the ``trees`` read model: one tree's shape, counts per state (and language)."""

from __future__ import annotations

import sqlite3


def tree_shape(conn: sqlite3.Connection, tree_id: str) -> tuple | None:
    """(state, goal_tree_size, max_depth, max_children_count, origin), or None."""
    return conn.execute(
        "SELECT state, goal_tree_size, max_depth, max_children_count, origin FROM trees"
        " WHERE tree_id = ?",
        (tree_id,),
    ).fetchone()


def count_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    """Trees per state (states without a tree are absent)."""
    return dict(conn.execute("SELECT state, count(*) FROM trees GROUP BY state").fetchall())


def count_by_state_and_lang(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    """(state, lang, trees) for every pair that has a tree."""
    return conn.execute("SELECT state, lang, count(*) FROM trees GROUP BY state, lang").fetchall()
