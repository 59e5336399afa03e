"""One row per conversation tree: its state and the sizes that drive growth.

``size`` counts accepted, undeleted messages (the domain's tree size); ``grow_size``
counts what OA's extendible-tree check counts: the accepted root plus undeleted replies
that are accepted or still under review. Both are recounted from the message rows of
the tree (a tree has tens of messages) whenever a fact can change them.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from domain.states import ACTIVE_STATES, TreeState
from domain.tree import ConversationTree as T
from projections.base import Projection, handles, ts, uid

_ACTIVE = frozenset(s.value for s in ACTIVE_STATES)


class TreesProjection(Projection):
    name = "trees"
    tables = ("trees",)
    ddl = (
        """CREATE TABLE IF NOT EXISTS trees (
            tree_id TEXT PRIMARY KEY, state TEXT NOT NULL, active INTEGER NOT NULL,
            lang TEXT NOT NULL, goal_tree_size INTEGER NOT NULL, max_depth INTEGER NOT NULL,
            max_children_count INTEGER NOT NULL, origin TEXT, user_id TEXT,
            created_at REAL NOT NULL, won_lottery_at REAL, halted_from TEXT,
            state_changed_at REAL NOT NULL, state_reason TEXT,
            size INTEGER NOT NULL DEFAULT 0, grow_size INTEGER NOT NULL DEFAULT 0,
            message_count INTEGER NOT NULL DEFAULT 1)""",
        "CREATE INDEX IF NOT EXISTS trees_state ON trees (state, lang)",
    )

    @handles(T.TreeStarted)
    def on_started(self, c: sqlite3.Cursor, e: T.TreeStarted) -> None:
        c.execute(
            "INSERT INTO trees (tree_id, state, active, lang, goal_tree_size, max_depth,"
            " max_children_count, origin, user_id, created_at, state_changed_at, state_reason)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (uid(e.originator_id), e.state, int(e.state in _ACTIVE), e.lang, e.goal_tree_size,
             e.max_depth, e.max_children_count, e.origin, uid(e.user_id), ts(e.timestamp),
             ts(e.timestamp), "started"))

    @handles(T.ReplyAdded, T.ReviewDecided, T.MessageDeleted, T.MessageUndeleted)
    def on_size_change(self, c: sqlite3.Cursor, e: Any) -> None:
        tree_id = uid(e.originator_id)
        c.execute(
            "UPDATE trees SET"
            " size = (SELECT count(*) FROM messages WHERE tree_id = :t AND review_result = 1"
            "         AND deleted = 0),"
            " grow_size = (SELECT count(*) FROM messages WHERE tree_id = :t AND deleted = 0 AND"
            "         (review_result = 1 OR (review_result IS NULL AND parent_id IS NOT NULL))),"
            " message_count = (SELECT count(*) FROM messages WHERE tree_id = :t)"
            " WHERE tree_id = :t", {"t": tree_id})

    @handles(T.StateChanged, T.TreeHalted, T.TreeResumed)
    def on_state(self, c: sqlite3.Cursor, e: T.StateChanged) -> None:
        halted_from = e.from_state if isinstance(e, T.TreeHalted) else None
        c.execute(
            "UPDATE trees SET state = ?, active = ?, state_changed_at = ?, state_reason = ?,"
            " halted_from = ?,"
            " won_lottery_at = CASE WHEN ? AND won_lottery_at IS NULL THEN ? ELSE won_lottery_at END"
            " WHERE tree_id = ?",
            (e.to_state, int(e.to_state in _ACTIVE), ts(e.timestamp), e.reason, halted_from,
             e.to_state == TreeState.GROWING.value, ts(e.timestamp), uid(e.originator_id)))
