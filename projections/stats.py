"""Per-user statistics (OA's UserStats and TrollStats) as hourly counters.

OA recomputes its stats tables wholesale every few minutes, counting each fact in the
window of its own date: a message by its creation, a label task by the time it was
issued, a ranking by its submission. Here each fact is a counter in the row (user, UTC
hour of that date). Handlers only add and subtract, never look at a clock, so the rows
are a function of the log; a time frame is summed from the hour rows at query time:

- day: the last 24 hours, at hour granularity (the hour holding now - 24 h counts whole,
  so the window is 24 to 25 hours long);
- week / month: since UTC midnight 7 / 30 days before today (OA's bounds, exact);
- total: everything.

Message counters (prompts, replies, acceptance, emoji and label sums, spam prompts)
follow the message: review, deletion, emojis, labels and the tree's state change them.
``stats_messages`` keeps the facts of each message that matter here, and each change
moves the author's hour row by what it changes (a deletion takes the message's whole
share away, an undeletion brings it back). The projection reads only its own tables, so
it does not depend on the order or batching of the other projections.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import msgspec

from domain.model.labels import LabelKind
from domain.model.states import TreeState
from domain.model.task_types import LABEL_TASKS
from domain.model.tree import ConversationTree
from domain.model.user import User
from projections.base import Projection, handles, ts, uid
from projections.stats_rules import hour_of, label_votes, next_streak
from projections.stats_tables import DDL, TABLES, hours_upsert
from projections.user_merge import StatsMerge
from projections.users import TaskIssuedView

_EMOJI_FIELDS = {"+1": "upvotes", "-1": "downvotes", "red_flag": "red_flags"}
_RANKED = ("reply_ranked_1", "reply_ranked_2", "reply_ranked_3")
_LABEL_COUNTER = {"simple": "labels_simple", "full": "labels_full"}


_encode = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.decode
# A cached message: [user_id, hour, counter, deleted, accepted, spam_tree, counters].
USER, HOUR_, COUNTER, DELETED, ACCEPTED, SPAM_TREE, COUNTERS = range(7)
_CACHE_LIMIT = 200_000
_UNKNOWN: Any = object()


class StatsProjection(StatsMerge, Projection):
    """Handlers work on dicts (message facts cached across batches, the batch's counter
    deltas); ``end_batch`` writes them with a few executemany calls. The runner calls
    begin_batch / end_batch (abort_batch on failure) around every batch."""

    name = "user_stats"
    # Handlers take ids as text, so they accept log views and domain events; a task's
    # payload is read for its mode only, in the view the users projection decodes too.
    views = {User.TaskIssued: TaskIssuedView}
    replay_indexes = ()  # handlers look rows up by key only
    replay_cost = 2.5
    tables = TABLES
    ddl = DDL

    def __init__(self) -> None:
        self._cursor: sqlite3.Cursor | None = None
        self._conn: sqlite3.Connection | None = None
        self._messages: dict[str, list[Any] | None] = {}
        self._streaks: dict[str, tuple[float, float, int] | None] = {}
        # stats_tasks as a whole (open label tasks are few): task -> (mode, hour)
        self._open: dict[str, tuple[str, int]] | None = None
        self._reset_batch()

    # ------------------------------------------------------------ the batch
    def _reset_batch(self) -> None:
        self._dirty: set[str] = set()
        self._votes: dict[tuple[str, str], dict[str, int]] = {}
        self._pending: dict[str, dict[str, int]] = {}  # message -> label votes to book
        self._emojis: dict[tuple[str, str, str], bool] = {}
        # Label tasks issued (task -> row) and closed (stored rows to delete) this batch:
        # a task issued and done within one batch never reaches the table.
        self._tasks: dict[str, tuple[str, int]] = {}
        self._closed: list[tuple[str]] = []
        self._dirty_streaks: set[str] = set()
        self._hours: dict[tuple[str, int], dict[str, int]] = {}

    def begin_batch(self, c: sqlite3.Cursor) -> None:
        # The caches hold what the tables hold; another connection (a rebuilt file) or a
        # full cache starts them afresh.
        if (
            self._conn is not c.connection
            or len(self._messages) > _CACHE_LIMIT
            or self._open is None
        ):
            self._messages, self._streaks, self._conn = {}, {}, c.connection
            self._open = {
                k: (mode, hour)
                for k, mode, hour in c.execute("SELECT task_id, mode, hour FROM stats_tasks")
            }
        self._cursor = c
        self._reset_batch()

    def abort_batch(self) -> None:
        self._cursor, self._conn = None, None
        self._messages, self._streaks, self._open = {}, {}, None
        self._reset_batch()

    def end_batch(self, c: sqlite3.Cursor) -> None:
        self._book()
        messages = self._messages
        c.executemany(
            "INSERT OR REPLACE INTO stats_messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (k, *m[:COUNTERS], _encode(m[COUNTERS]).decode())
                for k, m in ((k, messages[k]) for k in self._dirty)
                if m is not None
            ],
        )
        c.executemany(
            "INSERT OR REPLACE INTO stats_label_votes VALUES (?, ?, ?)",
            [(*key, _encode(v).decode()) for key, v in self._votes.items()],
        )
        c.executemany(
            "INSERT OR IGNORE INTO stats_emojis VALUES (?, ?, ?)",
            [key for key, on in self._emojis.items() if on],
        )
        c.executemany(
            "DELETE FROM stats_emojis WHERE message_id = ? AND emoji = ? AND user_id = ?",
            [key for key, on in self._emojis.items() if not on],
        )
        c.executemany("DELETE FROM stats_tasks WHERE task_id = ?", self._closed)
        c.executemany(
            "INSERT OR REPLACE INTO stats_tasks VALUES (?, ?, ?)",
            [(k, *t) for k, t in self._tasks.items()],
        )
        if self._open is not None:
            self._open.update(self._tasks)
        c.executemany(
            "INSERT OR REPLACE INTO user_streaks VALUES (?, ?, ?, ?)",
            [(k, *streak) for k in self._dirty_streaks if (streak := self._streaks[k]) is not None],
        )
        # Every hour row an event touched is written, zero changes too: whether a row
        # exists must not depend on how the log was cut into batches.
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for (user_id, hour), delta in self._hours.items():
            names = tuple(delta)
            rows = groups.get(names)
            if rows is None:
                rows = groups[names] = []
            rows.append((user_id, hour, *delta.values()))
        for names, rows in groups.items():
            c.executemany(hours_upsert(names), rows)
        self._cursor = None
        self._reset_batch()

    def _c(self) -> sqlite3.Cursor:
        if self._cursor is None:
            raise RuntimeError("StatsProjection handlers run between begin_batch and end_batch")
        return self._cursor

    def _add(self, user_id: str | None, hour: int, delta: Mapping[str, int], sign: int = 1) -> None:
        if user_id is None:
            return
        row = self._hours.get((user_id, hour))
        if row is None:
            row = self._hours[user_id, hour] = {}
        for k, v in delta.items():
            row[k] = row.get(k, 0) + sign * v

    def _count(self, user_id: str | None, hour: int, name: str) -> None:
        """_add of one counter by 1 (most facts)."""
        if user_id is None:
            return
        row = self._hours.get((user_id, hour))
        if row is None:
            self._hours[user_id, hour] = {name: 1}
        else:
            row[name] = row.get(name, 0) + 1

    def _message(self, message_id: str) -> list[Any] | None:
        m = self._messages.get(message_id, _UNKNOWN)
        if m is not _UNKNOWN:
            return m
        row = (
            self._c()
            .execute(
                "SELECT user_id, hour, counter, deleted, accepted, spam_tree, counters"
                " FROM stats_messages WHERE message_id = ?",
                (message_id,),
            )
            .fetchone()
        )
        m = None if row is None else [*row[:COUNTERS], _decode(row[COUNTERS])]
        self._messages[message_id] = m
        return m

    # ------------------------------------------------------------ message counters
    @staticmethod
    def _counted(m: list[Any]) -> dict[str, int]:
        """What an undeleted message adds for its author (spam_prompts aside)."""
        out = dict(m[COUNTERS])
        out[m[COUNTER]] = out.get(m[COUNTER], 0) + 1
        if m[ACCEPTED]:
            out["accepted_" + m[COUNTER]] = 1
        return out

    def _insert(self, e: Any, message_id: str, counter: str, spam_tree: int = 0) -> None:
        user_id, hour = uid(e.user_id), hour_of(ts(e.timestamp))
        self._messages[message_id] = [user_id, hour, counter, 0, 0, spam_tree, {}]
        self._dirty.add(message_id)
        self._add(user_id, hour, {counter: 1, "spam_prompts": spam_tree})

    def _bump(self, message_id: str, delta: Mapping[str, int]) -> None:
        """Add to a message's emoji / label counters (and to its author while undeleted)."""
        m = self._message(message_id)
        if m is None:
            return
        self._dirty.add(message_id)
        counters, row = m[COUNTERS], None
        if not m[DELETED] and m[USER] is not None:
            row = self._hours.get((m[USER], m[HOUR_]))
            if row is None:
                row = self._hours[m[USER], m[HOUR_]] = {}
        for k, v in delta.items():
            total = counters.get(k, 0) + v
            if total:
                counters[k] = total
            else:
                counters.pop(k, None)
            if row is not None:
                row[k] = row.get(k, 0) + v

    @handles(ConversationTree.TreeStarted)
    def on_started(self, c: sqlite3.Cursor, e: Any) -> None:
        self._insert(
            e, uid(e.originator_id), "prompts", int(e.state == TreeState.ABORTED_LOW_GRADE.value)
        )

    @handles(ConversationTree.ReplyAdded)
    def on_reply(self, c: sqlite3.Cursor, e: Any) -> None:
        self._insert(e, uid(e.message_id), f"replies_{e.role}")

    @handles(ConversationTree.ReviewDecided)
    def on_review(self, c: sqlite3.Cursor, e: Any) -> None:
        message_id = uid(e.message_id)
        m = self._message(message_id)
        accepted = int(e.accepted)
        if m is None or m[ACCEPTED] == accepted:
            return
        m[ACCEPTED] = accepted
        self._dirty.add(message_id)
        if not m[DELETED]:
            self._add(m[USER], m[HOUR_], {"accepted_" + m[COUNTER]: 1 if accepted else -1})

    @handles(ConversationTree.EmojiToggled)
    def on_emoji(self, c: sqlite3.Cursor, e: Any) -> None:
        name = _EMOJI_FIELDS.get(e.emoji)
        if name is None:
            return
        # A report flags the message again even when the user flagged it before: a click
        # counts once per user, so the clicks themselves are kept.
        key = (uid(e.message_id), e.emoji, uid(e.user_id) or "")
        present = self._emojis.get(key)
        if present is None:
            present = (
                self._c()
                .execute(
                    "SELECT 1 FROM stats_emojis WHERE message_id = ? AND emoji = ? AND user_id = ?",
                    key,
                )
                .fetchone()
                is not None
            )
        if present != bool(e.added):
            self._emojis[key] = bool(e.added)
            self._bump(key[0], {name: 1 if e.added else -1})

    @handles(ConversationTree.LabelsSubmitted)
    def on_labels(self, c: sqlite3.Cursor, e: Any) -> None:
        message_id = uid(e.message_id)
        votes = label_votes(e.labels)
        if e.kind != LabelKind.TASK:  # the user's earlier free/report labels are replaced
            key = (message_id, uid(e.user_id) or "")
            before = self._votes.get(key)
            if before is None:
                found = (
                    self._c()
                    .execute(
                        "SELECT votes FROM stats_label_votes WHERE message_id = ? AND user_id = ?",
                        key,
                    )
                    .fetchone()
                )
                before = _decode(found[0]) if found else {}
            self._votes[key] = votes
            votes = dict(votes)
            for k, v in before.items():
                votes[k] = votes.get(k, 0) - v
        if votes:
            # Added up per message and booked at the batch's end: reviews come in threes.
            # (Booking later is the same: a deletion moves the message's whole share, so
            # its author's row ends with the counters exactly while it is not deleted.)
            pending = self._pending.get(message_id)
            if pending is None:
                self._pending[message_id] = votes
            else:
                for k, v in votes.items():
                    pending[k] = pending.get(k, 0) + v

    def _book(self) -> None:
        """Book the batch's pending label votes."""
        for message_id, votes in self._pending.items():
            self._bump(message_id, votes)
        self._pending.clear()

    def _set_deleted(self, ids: list[Any], deleted: int) -> None:
        for message_id in (uid(i) for i in ids):
            m = self._message(message_id)
            if m is None or m[DELETED] == deleted:
                continue
            m[DELETED] = deleted
            self._dirty.add(message_id)
            self._add(m[USER], m[HOUR_], self._counted(m), -1 if deleted else 1)

    @handles(ConversationTree.MessageDeleted, ConversationTree.MessagesPurged)
    def on_deleted(self, c: sqlite3.Cursor, e: Any) -> None:
        self._set_deleted(e.message_ids, 1)

    @handles(ConversationTree.MessageUndeleted)
    def on_undeleted(self, c: sqlite3.Cursor, e: Any) -> None:
        self._set_deleted(e.message_ids, 0)

    @handles(
        ConversationTree.StateChanged, ConversationTree.TreeHalted, ConversationTree.TreeResumed
    )
    def on_state(self, c: sqlite3.Cursor, e: Any) -> None:
        aborted = TreeState.ABORTED_LOW_GRADE.value
        if e.from_state != aborted and e.to_state != aborted:
            return
        message_id = uid(e.originator_id)
        m = self._message(message_id)
        spam = int(e.to_state == aborted)
        if m is None or m[SPAM_TREE] == spam:
            return
        m[SPAM_TREE] = spam
        self._dirty.add(message_id)
        # OA counts aborted trees whether the prompt is deleted or not.
        self._add(m[USER], m[HOUR_], {"spam_prompts": 1 if spam else -1})

    # ------------------------------------------------------------ other facts
    @handles(ConversationTree.RankingSubmitted)
    def on_ranking(self, c: sqlite3.Cursor, e: Any) -> None:
        hour = hour_of(ts(e.timestamp))
        self._count(uid(e.user_id), hour, "rankings_total")
        # reply_ranked_k: the author of the message at position k of this submission.
        for name, message_id in zip(_RANKED, e.ranked_message_ids):
            m = self._message(uid(message_id))
            if m is not None:
                self._count(m[USER], hour, name)

    @handles(User.TaskIssued)
    def on_issued(self, c: sqlite3.Cursor, e: Any) -> None:
        if e.task_type in LABEL_TASKS:
            mode = e.payload.get("mode")
            if mode in _LABEL_COUNTER:
                self._tasks[uid(e.task_id)] = (mode, hour_of(ts(e.issued_at)))

    def _close_task(self, task_id: str) -> tuple[str, int] | None:
        task = self._tasks.pop(task_id, None)
        if task is None and self._open is not None:
            task = self._open.pop(task_id, None)
            if task is not None:
                self._closed.append((task_id,))  # deleted at the end of the batch
        return task

    @handles(User.TaskSkipped, User.TaskExpired)
    def on_task_closed(self, c: sqlite3.Cursor, e: Any) -> None:
        self._close_task(uid(e.task_id))

    @handles(User.TaskCompleted)
    def on_task_done(self, c: sqlite3.Cursor, e: Any) -> None:
        user_id, now = uid(e.originator_id), ts(e.timestamp)
        task = self._close_task(uid(e.task_id))
        if task is not None:
            self._count(user_id, task[1], _LABEL_COUNTER[task[0]])
        if user_id in self._streaks:
            row = self._streaks[user_id]
        else:
            row = (
                self._c()
                .execute(
                    "SELECT last_activity, streak_start, streak_days"
                    " FROM user_streaks WHERE user_id = ?",
                    (user_id,),
                )
                .fetchone()
            )
        last, start = (row[0], row[1]) if row else (None, None)
        days, start = next_streak(last, start, now)
        self._streaks[user_id] = (now, start, days)
        self._dirty_streaks.add(user_id)
