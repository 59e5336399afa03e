"""Processes: followers of the read model that issue commands back to the application.

Each looks only at current read-model state, never at single events, so running one
again (after a restart, during a replay, twice in a row) does nothing new: a tree that
was already activated or a task that already expired is simply no longer selected, and
a command refused by the aggregate because another process got there first is ignored.
"""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from domain.errors import DomainError

_WAITING_PROMPTS = """
SELECT t.tree_id, t.lang, t.user_id FROM trees t
WHERE t.state = 'prompt_lottery_waiting' ORDER BY t.created_at, t.tree_id"""

# How often each author's replies were ranked first in a single ranking in the last month
# (OA's monthly reply_ranked_1), the weight of their waiting prompts in the lottery.
_RANKED_FIRST = """
SELECT m.user_id, count(*) FROM rankings r
JOIN messages m ON m.message_id = json_extract(r.ranked, '$[0]')
WHERE r.created_at >= ? AND m.user_id IS NOT NULL GROUP BY m.user_id"""


def prompt_lottery(app: Any, conn: sqlite3.Connection, rng: random.Random,
                   now: datetime | None = None) -> list[tuple[UUID, int | None]]:
    """Promote waiting prompts to growing while their language has room.

    Returns (tree id, log position) per activation, so a caller can wait for the read model.
    """
    config = app.config
    now = now or app.now()
    growing = dict(conn.execute(
        "SELECT lang, count(*) FROM trees WHERE state = 'growing' GROUP BY lang").fetchall())
    waiting: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for tree_id, lang, user_id in conn.execute(_WAITING_PROMPTS):
        waiting[lang].append((tree_id, user_id))
    if not waiting:
        return []
    since = (now - timedelta(days=30)).timestamp()
    ranked_first = dict(conn.execute(_RANKED_FIRST, (since,)).fetchall())
    activated = []
    for lang in sorted(waiting):
        candidates = waiting[lang]
        slots = config.max_active_trees - growing.get(lang, 0)
        while slots > 0 and candidates:
            weights = [1 + ranked_first.get(user_id, 0) for _, user_id in candidates]
            index = rng.choices(range(len(candidates)), weights=weights)[0]
            tree_id, _ = candidates.pop(index)
            try:
                position = app.activate_tree(tree_id=UUID(tree_id), reason="prompt_lottery")
            except DomainError:
                continue  # moved on since the read model saw it (halted, activated elsewhere)
            activated.append((UUID(tree_id), position))
            slots -= 1
    return activated


def expire_tasks(app: Any, conn: sqlite3.Connection,
                 now: datetime | None = None) -> dict[UUID, list[UUID]]:
    """Expire open tasks past their expiry time; returns the expired task ids per user."""
    now = now or app.now()
    users = [UUID(u) for (u,) in conn.execute(
        "SELECT DISTINCT user_id FROM tasks WHERE status = 'open' AND expires_at <= ?"
        " ORDER BY user_id", (now.timestamp(),))]
    expired = {}
    for user_id in users:
        ids = app.expire_tasks(user_id=user_id)
        if ids:
            expired[user_id] = ids
    return expired
