"""Queries behind the moderators' pages: the tree browser and the reported messages."""

from __future__ import annotations

import sqlite3
from typing import Any

_BROWSE = """
SELECT t.tree_id, t.state, t.lang, t.message_count, t.created_at, m.text, u.username
FROM trees t JOIN messages m ON m.message_id = t.tree_id
LEFT JOIN users u ON u.user_id = t.user_id
WHERE (:state = '' OR t.state = :state) AND (:lang = '' OR t.lang = :lang)
  AND (:q = '' OR t.tree_id IN (SELECT tree_id FROM messages WHERE text LIKE :q ESCAPE '\\'))
  AND (:user = '' OR t.tree_id IN (SELECT m2.tree_id FROM messages m2
       JOIN users u2 ON u2.user_id = m2.user_id WHERE u2.username = :user
       OR u2.display_name = :user))
ORDER BY t.created_at DESC LIMIT 100"""


def like_pattern(text: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching ``text`` anywhere, taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def browse_trees(
    conn: sqlite3.Connection, *, state: str, lang: str, q: str, user: str
) -> list[dict[str, Any]]:
    """The latest 100 trees matching every non-empty filter: state, language, a LIKE
    pattern over any of their texts (``like_pattern``), an author's username or name."""
    where = {"state": state, "lang": lang, "q": q, "user": user}
    keys = ("tree_id", "state", "lang", "messages", "created_at", "text", "author")
    return [dict(zip(keys, r)) for r in conn.execute(_BROWSE, where).fetchall()]


def reports(conn: sqlite3.Connection, limit: int = 200) -> list[dict[str, Any]]:
    """The latest reports (labels of kind 'report'), with the message and the reporter."""
    rows = conn.execute(
        "SELECT l.message_id, m.tree_id, m.text, l.labels, l.created_at, u.display_name"
        " FROM labels l JOIN messages m ON m.message_id = l.message_id"
        " LEFT JOIN users u ON u.user_id = l.user_id"
        " WHERE l.kind = 'report' ORDER BY l.created_at DESC LIMIT ?",
        (limit,),
    ).fetchall()
    keys = ("message_id", "tree_id", "text", "labels", "created_at", "reporter")
    return [dict(zip(keys, r)) for r in rows]
