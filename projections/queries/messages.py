"""Queries on the ``messages`` read model (and the per-user ``message_emojis``): a message
row as OA's answers render it, a tree's rows, a user's emojis, filtered keyset pages."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

# The messages row as api.http.messages renders it (message_id first, tree_id second).
COLUMNS = (
    "message_id, tree_id, parent_id, role, lang, text, user_id, client_id,"
    " frontend_message_id, created_at, synthetic, model_name, review_count, review_result,"
    " ranking_count, rank, emojis, deleted, edited"
)
# The conditions a caller may pick for ``rows_where`` (no SQL text crosses the edge).
WHERE = {
    "message": "message_id = ?",
    "frontend": "client_id = ? AND frontend_message_id = ?",
    "tree": "tree_id = ?",
    "tree_undeleted": "tree_id = ? AND deleted = 0",
    "children": "parent_id = ?",
}


def rows_where(conn: sqlite3.Connection, which: str, params: Sequence[Any]) -> list[tuple]:
    """Message rows matching the named condition of ``WHERE``, oldest first."""
    return conn.execute(
        f"SELECT {COLUMNS} FROM messages WHERE {WHERE[which]} ORDER BY created_at, message_id",
        params,
    ).fetchall()


def tree_rows(
    conn: sqlite3.Connection, tree_id: str, include_deleted: bool, include_spam: bool
) -> list[tuple]:
    """A tree's message rows, oldest first; spam: a review rejected it."""
    where = (
        "tree_id = ?"
        + ("" if include_deleted else " AND deleted = 0")
        + ("" if include_spam else " AND (review_result IS NULL OR review_result = 1)")
    )
    return conn.execute(
        f"SELECT {COLUMNS} FROM messages WHERE {where} ORDER BY created_at, message_id",
        (tree_id,),
    ).fetchall()


def user_emojis(conn: sqlite3.Connection, user_id: str, ids: Sequence[str]) -> list[tuple]:
    """(message_id, emoji) for the emojis ``user_id`` set on these messages."""
    if not ids:
        return []
    return conn.execute(
        f"SELECT message_id, emoji FROM message_emojis WHERE user_id = ? AND message_id IN"
        f" ({','.join('?' * len(ids))})",
        [user_id, *ids],
    ).fetchall()


def emojis_of(conn: sqlite3.Connection, message_id: str, user_id: str) -> list[str]:
    """The emojis one user set on one message."""
    return [
        e
        for (e,) in conn.execute(
            "SELECT emoji FROM message_emojis WHERE message_id = ? AND user_id = ?",
            (message_id, user_id),
        )
    ]


def shape(conn: sqlite3.Connection, message_id: str) -> tuple | None:
    """(is a root, role, owning client id) of a message, or None when unknown."""
    return conn.execute(
        "SELECT parent_id IS NULL, role, client_id FROM messages WHERE message_id = ?",
        (message_id,),
    ).fetchone()


def live_text(conn: sqlite3.Connection, message_id: str) -> str | None:
    """The text of an undeleted message, or None."""
    row = conn.execute(
        "SELECT text FROM messages WHERE message_id = ? AND deleted = 0", (message_id,)
    ).fetchone()
    return row[0] if row else None


def recent_by_user(conn: sqlite3.Connection, user_id: str, limit: int = 50) -> list[tuple]:
    """A user's latest messages, newest first (the web's person page)."""
    return conn.execute(
        "SELECT message_id, tree_id, role, text, created_at, review_result, rank, emojis, deleted"
        " FROM messages WHERE user_id = ? ORDER BY created_at DESC LIMIT ?",
        (user_id, limit),
    ).fetchall()


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class MessageFilter:
    """A WHERE clause over the messages read model, built from OA's list parameters (the
    edge checks them first: a username needs its auth method, a search its language)."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.params: list[Any] = []

    def _add(self, condition: str, *params: Any) -> None:
        self.where.append(condition)
        self.params.extend(params)

    def client(self, client_id: str) -> None:
        self._add("client_id = ?", client_id)

    def user(self, user_id: str) -> None:
        self._add("user_id = ?", user_id)

    def named_user(self, auth_method: str, username: str) -> None:
        """Messages of the undeleted user with this name."""
        self._add(
            "user_id IN (SELECT user_id FROM users WHERE auth_method = ?"
            " AND username = ? AND deleted = 0)",
            auth_method,
            username,
        )

    def roots(self) -> None:
        self._add("parent_id IS NULL")

    def deleted(self, deleted: bool) -> None:
        self._add("deleted = ?", int(deleted))

    def lang(self, lang: str) -> None:
        self._add("lang = ?", lang)

    def search(self, text: str) -> None:
        """Every whitespace-separated term occurs in the text (LIKE, ASCII case-blind)."""
        for term in text.split():
            self._add("text LIKE ? ESCAPE '\\'", _like(term))

    def since(self, t: float) -> None:
        self._add("created_at >= ?", t)

    def until(self, t: float) -> None:
        self._add("created_at <= ?", t)

    def after(self, near: float, far: float, message_id: str) -> None:
        """At or after ``near``, strictly after (``far``, ``message_id``)."""
        self._add("created_at >= ? AND (created_at > ? OR message_id > ?)", near, far, message_id)

    def before(self, near: float, far: float, message_id: str) -> None:
        """At or before ``near``, strictly before (``far``, ``message_id``)."""
        self._add("created_at <= ? AND (created_at < ? OR message_id < ?)", near, far, message_id)


def filtered(conn: sqlite3.Connection, found: MessageFilter, desc: bool, limit: int) -> list[tuple]:
    """Rows under ``found``, ordered by (created_at, message_id), at most ``limit``."""
    order = "DESC" if desc else "ASC"
    where = f" WHERE {' AND '.join(found.where)}" if found.where else ""
    return conn.execute(
        f"SELECT {COLUMNS} FROM messages{where} ORDER BY created_at {order},"
        f" message_id {order} LIMIT ?",
        [*found.params, limit],
    ).fetchall()
