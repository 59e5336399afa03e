"""Read-model queries behind OA's statistics, admin and tree-shape endpoints.

Each takes a read-model connection first (run through ``call.read`` on the loop or on a
command thread). Purged messages (projections.moderation) are gone here, as OA's purge
deletes them: they count nowhere, not even as deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.model.states import ACTIVE_STATES, TreeState

_NOT_PURGED = "message_id NOT IN (SELECT message_id FROM purged_messages)"
CACHED_STATS = (
    "human_messages_by_lang",
    "human_messages_by_role",
    "message_trees_by_state",
    "message_trees_states_by_lang",
    "users_accepted_tos",
)


def _time(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


def system_stats(conn: sqlite3.Connection, excluding: Iterable[UUID] = ()) -> dict[str, Any]:
    """OA's SystemStats: messages (all, active = undeleted and accepted, per language,
    deleted) and trees; ``excluding``: messages to count as gone (a purge's preview)."""
    gone = [str(i) for i in excluding]
    skip = f" AND message_id NOT IN ({','.join('?' * len(gone))})" if gone else ""
    where = f"WHERE {_NOT_PURGED}{skip}"
    total, deleted = conn.execute(
        f"SELECT count(*), coalesce(sum(deleted), 0) FROM messages {where}", gone
    ).fetchone()
    by_lang = dict(
        conn.execute(
            f"SELECT lang, count(*) FROM messages {where} AND deleted = 0 AND review_result = 1"
            " GROUP BY lang ORDER BY lang",
            gone,
        ).fetchall()
    )
    trees = conn.execute(
        f"SELECT count(*) FROM messages {where} AND parent_id IS NULL", gone
    ).fetchone()[0]
    return {
        "all": total,
        "active": sum(by_lang.values()),
        "active_by_lang": by_lang,
        "deleted": deleted,
        "message_trees": trees,
    }


def message_counts(conn: sqlite3.Connection, only_active: bool) -> list[dict[str, Any]]:
    """Per tree, OA's TreeMessageCountStats (count, depth, oldest, youngest) of its
    undeleted messages; ``message_count`` (our earlier name for count) kept beside it."""
    where = " WHERE t.active = 1" if only_active else ""
    rows = conn.execute(
        "SELECT t.tree_id, t.state, t.goal_tree_size, count(m.message_id), max(m.depth),"
        " min(m.created_at), max(m.created_at) FROM trees t"
        " JOIN messages m ON m.tree_id = t.tree_id AND m.deleted = 0"
        f"{where} GROUP BY t.tree_id ORDER BY t.tree_id"
    ).fetchall()
    return [
        {
            "message_tree_id": r[0],
            "state": r[1],
            "goal_tree_size": r[2],
            "count": r[3],
            "message_count": r[3],
            "depth": r[4],
            "oldest": _time(r[5]),
            "youngest": _time(r[6]),
        }
        for r in rows
    ]


def state_counts(conn: sqlite3.Connection) -> dict[str, int]:
    found = dict(conn.execute("SELECT state, count(*) FROM trees GROUP BY state").fetchall())
    return {state.value: found.get(state.value, 0) for state in TreeState}


def cached_stats(conn: sqlite3.Connection, name: str) -> Any:
    """One of OA's cached statistics, computed now (the read model is always current)."""
    human = f"deleted = 0 AND synthetic = 0 AND {_NOT_PURGED}"
    if name == "human_messages_by_lang":
        query = f"SELECT lang, count(*) FROM messages WHERE {human} GROUP BY lang ORDER BY lang"
        return dict(conn.execute(query).fetchall())
    if name == "human_messages_by_role":
        query = f"SELECT role, count(*) FROM messages WHERE {human} GROUP BY role ORDER BY role"
        return dict(conn.execute(query).fetchall())
    if name == "message_trees_by_state":
        return state_counts(conn)
    if name == "message_trees_states_by_lang":
        rows = conn.execute(
            "SELECT lang, state, count(*) FROM trees GROUP BY lang, state ORDER BY lang, state"
        ).fetchall()
        return [{"lang": r[0], "state": r[1], "count": r[2]} for r in rows]
    if name == "users_accepted_tos":
        query = "SELECT count(*) FROM users WHERE tos_accepted_at IS NOT NULL AND deleted = 0"
        return {"count": conn.execute(query).fetchone()[0]}
    raise KeyError(name)


def active_tree_count(conn: sqlite3.Connection) -> int:
    states = [s.value for s in ACTIVE_STATES]
    query = f"SELECT count(*) FROM trees WHERE state IN ({','.join('?' * len(states))})"
    return conn.execute(query, states).fetchone()[0]


def longest_conversation(conn: sqlite3.Connection, tree_id: str) -> list[str]:
    """Message ids from the root to the deepest undeleted message (the earliest of equals)."""
    rows = conn.execute(
        "SELECT message_id, parent_id, depth, created_at FROM messages"
        " WHERE tree_id = ? AND deleted = 0",
        (tree_id,),
    ).fetchall()
    if not rows:
        return []
    parent = {r[0]: r[1] for r in rows}
    deepest = min(rows, key=lambda r: (-r[2], r[3], r[0]))[0]
    path = [deepest]
    while parent.get(path[-1]) is not None and parent[path[-1]] in parent:
        path.append(parent[path[-1]])
    return path[::-1]


def max_children(conn: sqlite3.Connection, tree_id: str) -> tuple[str, list[str]] | None:
    """The undeleted message with the most undeleted replies, and those replies in order."""
    row = conn.execute(
        "SELECT parent_id, count(*) AS n, min(created_at) FROM messages"
        " WHERE tree_id = ? AND deleted = 0 AND parent_id IS NOT NULL"
        " AND parent_id IN (SELECT message_id FROM messages WHERE tree_id = ? AND deleted = 0)"
        " GROUP BY parent_id ORDER BY n DESC, 3, parent_id LIMIT 1",
        (tree_id, tree_id),
    ).fetchone()
    if row is None:
        return None
    children = conn.execute(
        "SELECT message_id FROM messages WHERE parent_id = ? AND deleted = 0"
        " ORDER BY created_at, message_id",
        (row[0],),
    ).fetchall()
    return row[0], [c[0] for c in children]


def user_trees(conn: sqlite3.Connection, user_id: UUID) -> list[UUID]:
    """The trees holding the user's messages (a purge's candidates)."""
    rows = conn.execute(
        "SELECT DISTINCT tree_id FROM messages WHERE user_id = ? ORDER BY tree_id",
        (str(user_id),),
    ).fetchall()
    return [UUID(r[0]) for r in rows]


def user_messages(conn: sqlite3.Connection, user_id: UUID) -> list[tuple[UUID, UUID]]:
    """(tree id, message id) of the user's undeleted messages, parents before replies."""
    rows = conn.execute(
        "SELECT tree_id, message_id FROM messages WHERE user_id = ? AND deleted = 0"
        " ORDER BY tree_id, depth, created_at",
        (str(user_id),),
    ).fetchall()
    return [(UUID(r[0]), UUID(r[1])) for r in rows]


def flagged_messages(
    conn: sqlite3.Connection, max_count: int, *, after: tuple[float, str] | None = None
) -> list[dict[str, Any]]:
    """Unprocessed flagged messages, oldest first (after a (created_at, id) cursor)."""
    where, params = "processed = 0", []
    if after is not None:
        where += " AND (created_at > ? OR (created_at = ? AND message_id > ?))"
        params = [after[0], after[0], after[1]]
    rows = conn.execute(
        f"SELECT message_id, processed, created_at FROM flagged_messages WHERE {where}"
        " ORDER BY created_at, message_id LIMIT ?",
        [*params, max_count],
    ).fetchall()
    return [flagged_row(r) for r in rows]


def flagged_page(conn: sqlite3.Connection, max_count: int, after: str | None) -> dict[str, Any]:
    """A page of the queue after a cursor "<created_at>$<message_id>" (None: the start),
    with the cursor of the next page (None: the last page)."""
    start = None
    if after:
        moment, _, message_id = after.partition("$")
        start = (float(moment), str(UUID(message_id)))  # ValueError: not a cursor
    items = flagged_messages(conn, max_count + 1, after=start)
    more = len(items) > max_count
    items = items[:max_count]
    following = None
    if more:
        last = items[-1]["message_id"]
        (at,) = conn.execute(
            "SELECT created_at FROM flagged_messages WHERE message_id = ?", (last,)
        ).fetchone()
        following = f"{at!r}${last}"
    return {"items": items, "next": following}


def flagged_message(conn: sqlite3.Connection, message_id: UUID) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT message_id, processed, created_at FROM flagged_messages WHERE message_id = ?",
        (str(message_id),),
    ).fetchone()
    return None if row is None else flagged_row(row)


def flagged_row(row: tuple) -> dict[str, Any]:
    return {"message_id": row[0], "processed": bool(row[1]), "created_date": _time(row[2])}


def task_by_frontend_id(
    conn: sqlite3.Connection, client_id: UUID, frontend_message_id: str
) -> tuple[str, str] | None:
    """(task id, status) of the client's task acknowledged with this frontend id."""
    row = conn.execute(
        "SELECT t.task_id, t.status FROM tasks t JOIN users u ON u.user_id = t.user_id"
        " WHERE t.frontend_message_id = ? AND u.client_id = ? ORDER BY t.issued_at DESC",
        (frontend_message_id, str(client_id)),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def stats_window(
    conn: sqlite3.Connection, user_id: UUID, time_frame: str, now: datetime, window_size: int
) -> dict[str, Any]:
    """OA's leaderboard window: the ranks from ``window_size`` above the user to as many
    below (empty when the user has no rank in the time frame)."""
    from projections import leaderboard

    leaderboard.user_stats(conn, user_id, now)  # UserNotFoundError for an unknown user
    board = leaderboard.leaderboard(
        conn, time_frame, now, max_count=leaderboard.MAX_COUNT, highlighted_user_id=user_id
    )
    rows = board["leaderboard"]
    at = next((i for i, r in enumerate(rows) if r["highlighted"]), None)
    board["leaderboard"] = (
        [] if at is None else rows[max(0, at - window_size) : at + window_size + 1]
    )
    return board


def rows_by_id(conn: sqlite3.Connection, columns: str, ids: list[str]) -> list[tuple]:
    """The messages rows of these ids (``columns`` as the caller renders them), in the
    order of ``ids``; unknown ids are left out."""
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    found = {
        r[0]: r
        for r in conn.execute(
            f"SELECT {columns} FROM messages WHERE message_id IN ({marks})", ids
        ).fetchall()
    }
    return [found[i] for i in ids if i in found]


def tasks_by_type(conn: sqlite3.Connection) -> dict[str, int]:
    """Tasks handed out so far, per task type."""
    return dict(conn.execute("SELECT type, count(*) FROM tasks GROUP BY type").fetchall())
