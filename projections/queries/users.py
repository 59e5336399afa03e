"""Queries on the ``users`` read model as OA's answers show a user: a deleted user's
name is masked as ``deleted_<user_id>`` (its old name no longer finds it)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

DELETED_PREFIX = "deleted_"
SORT_KEYS = ("username", "display_name")
# (user_id, client_id, auth_method, username, display_name, enabled, deleted,
#  show_on_leaderboard, tos_accepted_at, notes, created_at)
_USERS = (
    "SELECT user_id, client_id, auth_method,"
    f" CASE WHEN deleted THEN '{DELETED_PREFIX}' || user_id ELSE username END AS username,"
    " display_name, enabled, deleted, show_on_leaderboard, tos_accepted_at, notes,"
    " created_at FROM users"
)


def by_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> list[tuple]:
    """The rows of these users (unknown ids are absent)."""
    if not ids:
        return []
    return conn.execute(
        f"SELECT * FROM ({_USERS}) WHERE user_id IN ({','.join('?' * len(ids))})", list(ids)
    ).fetchall()


def by_id(conn: sqlite3.Connection, user_id: str) -> tuple | None:
    return conn.execute(f"SELECT * FROM ({_USERS}) WHERE user_id = ?", (user_id,)).fetchone()


def display_names(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, str]:
    """user_id -> display name (as stored, unmasked) for the known ones of ``ids``."""
    if not ids:
        return {}
    return dict(
        conn.execute(
            f"SELECT user_id, display_name FROM users WHERE user_id IN ({','.join('?' * len(ids))})",
            list(ids),
        ).fetchall()
    )


def ordered(
    conn: sqlite3.Connection,
    key: str,
    *,
    scope: str | None,
    gte: tuple[str, str | None] | None,
    lte: tuple[str, str | None] | None,
    auth_method: str | None,
    search: str | None,
    desc: bool,
    limit: int,
) -> list[tuple]:
    """Users ordered by ``key`` then id (OA's keyset): from ``gte`` to ``lte``, each a
    (name, id or None) bound, strictly after/before the id when one is given."""
    assert key in SORT_KEYS
    where: list[str] = []
    params: list[Any] = []
    if scope is not None:
        where.append("client_id = ?")
        params.append(scope)
    for bound, op in ((gte, ">"), (lte, "<")):
        if bound is None:
            continue
        name, ident = bound
        if ident is not None:
            where.append(f"({key} {op} ? OR ({key} = ? AND user_id {op} ?))")
            params += [name, name, ident]
        else:
            where.append(f"{key} {op}= ?")
            params.append(name)
    if auth_method:
        where.append("auth_method = ?")
        params.append(auth_method)
    if search:
        where.append(f"instr({key}, ?) > 0")  # a plain substring (OA: LIKE '%text%')
        params.append(search)
    direction = "DESC" if desc else "ASC"
    sql = (
        f"SELECT * FROM ({_USERS})"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {key} {direction}, user_id {direction} LIMIT ?"
    )
    return conn.execute(sql, [*params, limit]).fetchall()
