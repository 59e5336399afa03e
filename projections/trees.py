"""One row per conversation tree: its state and the sizes that drive growth.

``size`` counts accepted, undeleted messages (the domain's tree size); ``grow_size``
counts what OA's extendible-tree check counts: the accepted root plus undeleted replies
that are accepted or still under review; ``message_count`` counts every message. They
are kept as running totals: `tree_members` holds, per message, the three facts they
depend on (reply or root, review result, deleted), so each event adds the difference its
message makes instead of recounting the tree, and the projection reads no other
projection's rows. Rows live in write-back caches for the batch (projections.writeback).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from domain.model.states import ACTIVE_STATES, TreeState
from domain.model.tree import ConversationTree
from projections.base import Projection, handles
from projections.user_merge import TreesMerge
from projections.writeback import RowCache

_ACTIVE = frozenset(s.value for s in ACTIVE_STATES)
_GROWING = TreeState.GROWING.value

COLUMNS = (
    "tree_id",
    "state",
    "active",
    "lang",
    "goal_tree_size",
    "max_depth",
    "max_children_count",
    "origin",
    "user_id",
    "created_at",
    "won_lottery_at",
    "halted_from",
    "state_changed_at",
    "state_reason",
    "size",
    "grow_size",
    "message_count",
)
STATE, ACTIVE, WON, HALTED_FROM, CHANGED_AT, REASON, SIZE, GROW, COUNT = (
    COLUMNS.index(c)
    for c in (
        "state",
        "active",
        "won_lottery_at",
        "halted_from",
        "state_changed_at",
        "state_reason",
        "size",
        "grow_size",
        "message_count",
    )
)
MEMBER_COLUMNS = ("message_id", "tree_id", "reply", "review_result", "deleted")
_, M_TREE, M_REPLY, M_RESULT, M_DELETED = range(len(MEMBER_COLUMNS))


def _counts(member: list[Any]) -> tuple[int, int]:
    """What one message adds to (size, grow_size)."""
    if member[M_DELETED]:
        return 0, 0
    result = member[M_RESULT]
    return int(result == 1), int(result == 1 or (result is None and member[M_REPLY] == 1))


class TreesProjection(TreesMerge, Projection):
    name = "trees"
    views = True
    replay_indexes = ()  # handlers look rows up by key only
    replay_cost = 1.0
    tables = ("trees", "tree_members")
    ddl = (
        """CREATE TABLE IF NOT EXISTS trees (
            tree_id TEXT PRIMARY KEY, state TEXT NOT NULL, active INTEGER NOT NULL,
            lang TEXT NOT NULL, goal_tree_size INTEGER NOT NULL, max_depth INTEGER NOT NULL,
            max_children_count INTEGER NOT NULL, origin TEXT, user_id TEXT,
            created_at REAL NOT NULL, won_lottery_at REAL, halted_from TEXT,
            state_changed_at REAL NOT NULL, state_reason TEXT,
            size INTEGER NOT NULL DEFAULT 0, grow_size INTEGER NOT NULL DEFAULT 0,
            message_count INTEGER NOT NULL DEFAULT 1)""",
        """CREATE TABLE IF NOT EXISTS tree_members (
            message_id TEXT PRIMARY KEY, tree_id TEXT NOT NULL, reply INTEGER NOT NULL,
            review_result INTEGER, deleted INTEGER NOT NULL) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS trees_state ON trees (state, lang)",
    )

    # ------------------------------------------------------------------ the batch
    def _setup(self) -> None:
        if "_trees" not in vars(self):  # here, not in __init__: subclasses need not call it
            self._trees = RowCache("trees", COLUMNS, COLUMNS[1:])
            self._members = RowCache(
                "tree_members", MEMBER_COLUMNS, ("review_result", "deleted"), clustered=True
            )

    def begin_batch(self, cursor: sqlite3.Cursor) -> None:
        self._setup()
        self._trees.begin(cursor)
        self._members.begin(cursor)

    def flush(self, cursor: sqlite3.Cursor) -> None:
        self._trees.flush()
        self._members.flush()

    end_batch = flush

    def abort_batch(self) -> None:
        self._setup()
        self._trees.discard()
        self._members.discard()

    def _change(self, e: Any, message_id: str, column: int, value: Any) -> None:
        """Set one fact of a member of the event's tree and carry the difference to the tree."""
        member = self._members.get(message_id)
        if member is None or member[M_TREE] != e.originator_id or member[column] == value:
            return
        before = _counts(member)
        member[column] = value
        self._members.changed.add(message_id)
        after = _counts(member)
        tree = self._trees.get(e.originator_id)
        if tree is not None and after != before:
            tree[SIZE] += after[0] - before[0]
            tree[GROW] += after[1] - before[1]
            self._trees.changed.add(e.originator_id)

    # ------------------------------------------------------------------ handlers
    @handles(ConversationTree.TreeStarted)
    def on_started(self, c: sqlite3.Cursor, e: Any) -> None:
        at = e.timestamp.timestamp()
        self._trees.add(
            [
                e.originator_id,
                e.state,
                int(e.state in _ACTIVE),
                e.lang,
                e.goal_tree_size,
                e.max_depth,
                e.max_children_count,
                e.origin,
                e.user_id,
                at,
                None,
                None,
                at,
                "started",
                0,
                0,
                1,
            ]
        )
        self._members.add([e.originator_id, e.originator_id, 0, None, 0])

    @handles(ConversationTree.ReplyAdded)
    def on_reply(self, c: sqlite3.Cursor, e: Any) -> None:
        member = [e.message_id, e.originator_id, 1, None, 0]
        self._members.add(member)
        tree = self._trees.get(e.originator_id)
        if tree is not None:
            size, grow = _counts(member)
            tree[SIZE] += size
            tree[GROW] += grow
            tree[COUNT] += 1
            self._trees.changed.add(e.originator_id)

    @handles(ConversationTree.ReviewDecided)
    def on_review(self, c: sqlite3.Cursor, e: Any) -> None:
        self._change(e, e.message_id, M_RESULT, int(e.accepted))

    @handles(ConversationTree.MessageDeleted, ConversationTree.MessagesPurged)
    def on_deleted(self, c: sqlite3.Cursor, e: Any) -> None:
        for message_id in e.message_ids:
            self._change(e, message_id, M_DELETED, 1)

    @handles(ConversationTree.MessageUndeleted)
    def on_undeleted(self, c: sqlite3.Cursor, e: Any) -> None:
        for message_id in e.message_ids:
            self._change(e, message_id, M_DELETED, 0)

    @handles(ConversationTree.StateChanged, ConversationTree.TreeResumed)
    def on_state(self, c: sqlite3.Cursor, e: Any) -> None:
        self._move(e, None)

    @handles(ConversationTree.TreeHalted)
    def on_halted(self, c: sqlite3.Cursor, e: Any) -> None:
        self._move(e, e.from_state)  # a halt remembers where the tree came from

    def _move(self, e: Any, halted_from: str | None) -> None:
        tree = self._trees.get(e.originator_id)
        if tree is None:
            return
        at = e.timestamp.timestamp()
        tree[STATE], tree[ACTIVE] = e.to_state, int(e.to_state in _ACTIVE)
        tree[CHANGED_AT], tree[REASON], tree[HALTED_FROM] = at, e.reason, halted_from
        if e.to_state == _GROWING and tree[WON] is None:
            tree[WON] = at
        self._trees.changed.add(e.originator_id)
