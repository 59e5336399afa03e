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
``stats_messages`` keeps the facts of each message that matter here; a handler computes
the message's contribution before and after the change and moves the author's hour row
by the difference. The projection reads only its own tables, so it does not depend on
the order or batching of the other projections.
"""

from __future__ import annotations

import json
import math
import sqlite3
from bisect import bisect_right
from itertools import accumulate
from typing import Any, Mapping

from domain.states import TreeState
from domain.task_types import LABEL_TASKS
from domain.tree import ConversationTree as T
from domain.user import User as U
from projections.base import Projection, dumps, handles, ts, uid

HOUR = 3600.0
DAY = 86400.0
# OA's periodic job resets the streak of users inactive for more than 36 hours.
STREAK_TIMEOUT = 36 * HOUR

LEADER_FIELDS = (
    "prompts", "accepted_prompts", "replies_assistant", "replies_prompter",
    "accepted_replies_assistant", "accepted_replies_prompter", "labels_simple", "labels_full",
    "rankings_total", "reply_ranked_1", "reply_ranked_2", "reply_ranked_3",
)
# Labels whose values others gave a user's messages add to the troll score (integer-cast).
TROLL_LABELS = ("spam", "lang_mismatch", "not_appropriate", "pii", "hate_speech",
                "sexual_content", "political_content")
# Labels the troll board shows as means.
MEAN_LABELS = ("quality", "humor", "toxicity", "violence", "helpfulness")
TROLL_FIELDS = (("upvotes", "downvotes", "red_flags", "spam_prompts") + TROLL_LABELS
                + tuple(f"{n}_{k}" for n in MEAN_LABELS for k in ("sum", "n")))
FIELDS = LEADER_FIELDS + TROLL_FIELDS
_EMOJI_FIELDS = {"+1": "upvotes", "-1": "downvotes", "red_flag": "red_flags"}

# Level = number of thresholds <= score (OA get_thresholds): 0, 4, 9, 16, 24, ... 6000.
LEVEL_THRESHOLDS: tuple[int, ...] = (0,) + tuple(
    round(x) for x in accumulate(i * 1.1521 + 3 for i in range(1, 100)))

def hour_of(seconds: float) -> int:
    return math.floor(seconds / HOUR)


def label_int(value: float) -> int:
    """A label value cast to an integer as Postgres casts OA's JSON numbers (half away from 0)."""
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


_MESSAGE_COLUMNS = ("user_id", "hour", "kind", "deleted", "accepted", "spam_tree", "emojis",
                    "labels")
_HOURS_UPSERT = (
    f"INSERT INTO user_hours (user_id, hour, {', '.join(FIELDS)})"
    f" VALUES (?, ?, {', '.join('?' * len(FIELDS))}) ON CONFLICT (user_id, hour) DO UPDATE SET"
    f" {', '.join(f'{n} = {n} + excluded.{n}' for n in FIELDS)}")


class StatsProjection(Projection):
    """Handlers change dicts of the batch (rows read on first use); ``end_batch`` writes
    them with a few executemany calls. The runner calls begin/end around every batch."""

    name = "user_stats"
    views = True  # handlers take ids as text, so they accept log views and domain events
    tables = ("user_hours", "stats_messages", "stats_label_votes", "stats_tasks", "user_streaks")
    ddl = (
        "CREATE TABLE IF NOT EXISTS user_hours (user_id TEXT NOT NULL, hour INTEGER NOT NULL, "
        + ", ".join(f"{f} NUMERIC NOT NULL DEFAULT 0" for f in FIELDS)
        + ", PRIMARY KEY (user_id, hour)) WITHOUT ROWID",
        # kind: the counter the message feeds (prompts / replies_<role>); emojis and labels:
        # its emoji counts and label sums as counter deltas (JSON).
        """CREATE TABLE IF NOT EXISTS stats_messages (
            message_id TEXT PRIMARY KEY, user_id TEXT, hour INTEGER NOT NULL, kind TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0, accepted INTEGER NOT NULL DEFAULT 0,
            spam_tree INTEGER NOT NULL DEFAULT 0, emojis TEXT NOT NULL DEFAULT '{}',
            labels TEXT NOT NULL DEFAULT '{}') WITHOUT ROWID""",
        # A user's latest task labels and latest free/report labels of a message (kind task /
        # other), as the messages projection keeps them: a new submission replaces the old.
        """CREATE TABLE IF NOT EXISTS stats_label_votes (
            message_id TEXT NOT NULL, user_id TEXT NOT NULL, kind TEXT NOT NULL,
            votes TEXT NOT NULL, PRIMARY KEY (message_id, user_id, kind)) WITHOUT ROWID""",
        # Open label tasks: a completed one counts in the hour it was issued (as OA).
        """CREATE TABLE IF NOT EXISTS stats_tasks (
            task_id TEXT PRIMARY KEY, mode TEXT NOT NULL, hour INTEGER NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS user_streaks (
            user_id TEXT PRIMARY KEY, last_activity REAL NOT NULL, streak_start REAL,
            streak_days INTEGER NOT NULL) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS user_hours_hour ON user_hours (hour)",
    )

    def __init__(self) -> None:
        self._cursor: sqlite3.Cursor | None = None

    # ------------------------------------------------------------ the batch
    def begin_batch(self, c: sqlite3.Cursor) -> None:
        self._cursor = c
        # key -> current row (None: absent); the dirty sets say what end_batch writes.
        self._messages: dict[str, dict[str, Any] | None] = {}
        self._votes: dict[tuple[str, str, str], dict[str, float]] = {}
        self._tasks: dict[str, tuple[str, int] | None] = {}
        self._streaks: dict[str, tuple[float, float, int] | None] = {}
        self._dirty_messages: set[str] = set()
        self._dirty_votes: set[tuple[str, str, str]] = set()
        self._dirty_tasks: set[str] = set()
        self._dirty_streaks: set[str] = set()
        self._hours: dict[tuple[str, int], dict[str, float]] = {}

    def abort_batch(self) -> None:
        self._cursor = None

    def end_batch(self, c: sqlite3.Cursor) -> None:
        messages = [m for m in (self._messages[k] for k in self._dirty_messages) if m]
        c.executemany(
            f"INSERT OR REPLACE INTO stats_messages (message_id, {', '.join(_MESSAGE_COLUMNS)})"
            f" VALUES ({', '.join('?' * (len(_MESSAGE_COLUMNS) + 1))})",
            [(m["message_id"], *(m[k] for k in _MESSAGE_COLUMNS[:6]), dumps(m["emojis"]),
              dumps(m["labels"])) for m in messages])
        c.executemany("INSERT OR REPLACE INTO stats_label_votes VALUES (?, ?, ?, ?)",
                      [(*key, dumps(self._votes[key])) for key in self._dirty_votes])
        done = [(k,) for k in self._dirty_tasks if self._tasks[k] is None]
        c.executemany("DELETE FROM stats_tasks WHERE task_id = ?", done)
        c.executemany("INSERT OR REPLACE INTO stats_tasks VALUES (?, ?, ?)",
                      [(k, *self._tasks[k]) for k in self._dirty_tasks  # type: ignore[misc]
                       if self._tasks[k] is not None])
        c.executemany("INSERT OR REPLACE INTO user_streaks VALUES (?, ?, ?, ?)",
                      [(k, *self._streaks[k]) for k in self._dirty_streaks])  # type: ignore[misc]
        c.executemany(_HOURS_UPSERT, [(user_id, hour, *(d.get(f, 0) for f in FIELDS))
                                      for (user_id, hour), d in self._hours.items()
                                      if any(d.values())])
        self._cursor = None

    def _c(self) -> sqlite3.Cursor:
        if self._cursor is None:
            raise RuntimeError("StatsProjection handlers run between begin_batch and end_batch")
        return self._cursor

    def _add(self, user_id: str | None, hour: int, delta: Mapping[str, float]) -> None:
        if user_id is None:
            return
        row = self._hours.setdefault((user_id, hour), {})
        for k, v in delta.items():
            if v:
                row[k] = row.get(k, 0) + v

    def _message(self, message_id: str) -> dict[str, Any] | None:
        if message_id not in self._messages:
            row = self._c().execute(
                f"SELECT {', '.join(_MESSAGE_COLUMNS)} FROM stats_messages WHERE message_id = ?",
                (message_id,)).fetchone()
            m = None
            if row is not None:
                m = dict(zip(_MESSAGE_COLUMNS, row), message_id=message_id)
                m["emojis"], m["labels"] = json.loads(row[6]), json.loads(row[7])
            self._messages[message_id] = m
        return self._messages[message_id]

    # ------------------------------------------------------------ message counters
    def _change(self, message_id: str, **changes: Any) -> None:
        """Change a message's facts and move its counters by the difference."""
        m = self._message(message_id)
        if m is None:
            return
        old = _contribution(m)
        for name, change in changes.items():
            m[name] = change(m[name]) if callable(change) else change
        self._dirty_messages.add(message_id)
        self._add(m["user_id"], m["hour"], _minus(_contribution(m), old))

    def _insert(self, e: Any, message_id: str, kind: str) -> None:
        user_id, hour = uid(e.user_id), hour_of(ts(e.timestamp))
        self._messages[message_id] = {
            "message_id": message_id, "user_id": user_id, "hour": hour, "kind": kind,
            "deleted": 0, "accepted": 0, "spam_tree": 0, "emojis": {}, "labels": {}}
        self._dirty_messages.add(message_id)
        self._add(user_id, hour, {kind: 1})

    @handles(T.TreeStarted)
    def on_started(self, c: sqlite3.Cursor, e: Any) -> None:
        self._insert(e, uid(e.originator_id), "prompts")
        if e.state == TreeState.ABORTED_LOW_GRADE.value:
            self._change(uid(e.originator_id), spam_tree=1)

    @handles(T.ReplyAdded)
    def on_reply(self, c: sqlite3.Cursor, e: Any) -> None:
        self._insert(e, uid(e.message_id), f"replies_{e.role}")

    @handles(T.ReviewDecided)
    def on_review(self, c: sqlite3.Cursor, e: Any) -> None:
        self._change(uid(e.message_id), accepted=int(e.accepted))

    @handles(T.EmojiToggled)
    def on_emoji(self, c: sqlite3.Cursor, e: Any) -> None:
        name = _EMOJI_FIELDS.get(e.emoji)
        if name is not None:  # the domain records only toggles that change something
            step = 1 if e.added else -1
            self._change(uid(e.message_id), emojis=lambda counts: _plus(counts, {name: step}))

    @handles(T.LabelsSubmitted)
    def on_labels(self, c: sqlite3.Cursor, e: Any) -> None:
        message_id = uid(e.message_id)
        key = (message_id, uid(e.user_id) or "", "task" if e.kind == "task" else "other")
        if key in self._votes:
            before = self._votes[key]
        else:
            found = self._c().execute(
                "SELECT votes FROM stats_label_votes WHERE message_id = ? AND user_id = ?"
                " AND kind = ?", key).fetchone()
            before = json.loads(found[0]) if found else {}
        votes = self._votes[key] = _label_votes(e.labels)
        self._dirty_votes.add(key)
        self._change(message_id, labels=lambda sums: _plus(sums, _minus(votes, before)))

    @handles(T.MessageDeleted)
    def on_deleted(self, c: sqlite3.Cursor, e: Any) -> None:
        for message_id in e.message_ids:
            self._change(uid(message_id), deleted=1)

    @handles(T.MessageUndeleted)
    def on_undeleted(self, c: sqlite3.Cursor, e: Any) -> None:
        for message_id in e.message_ids:
            self._change(uid(message_id), deleted=0)

    @handles(T.StateChanged, T.TreeHalted, T.TreeResumed)
    def on_state(self, c: sqlite3.Cursor, e: Any) -> None:
        aborted = TreeState.ABORTED_LOW_GRADE.value
        if e.from_state == aborted or e.to_state == aborted:
            self._change(uid(e.originator_id), spam_tree=int(e.to_state == aborted))

    # ------------------------------------------------------------ other facts
    @handles(T.RankingSubmitted)
    def on_ranking(self, c: sqlite3.Cursor, e: Any) -> None:
        hour = hour_of(ts(e.timestamp))
        self._add(uid(e.user_id), hour, {"rankings_total": 1})
        # reply_ranked_k: the author of the message at position k of this submission.
        for k, message_id in enumerate(e.ranked_message_ids[:3], start=1):
            m = self._message(uid(message_id))
            if m is not None:
                self._add(m["user_id"], hour, {f"reply_ranked_{k}": 1})

    @handles(U.TaskIssued)
    def on_issued(self, c: sqlite3.Cursor, e: Any) -> None:
        mode = e.payload.get("mode")
        if e.task_type in LABEL_TASKS and mode in ("simple", "full"):
            task_id = uid(e.task_id)
            self._tasks[task_id] = (mode, hour_of(ts(e.issued_at)))
            self._dirty_tasks.add(task_id)

    def _close_task(self, task_id: str) -> tuple[str, int] | None:
        if task_id in self._tasks:
            task = self._tasks[task_id]
        else:
            task = self._c().execute("SELECT mode, hour FROM stats_tasks WHERE task_id = ?",
                                     (task_id,)).fetchone()
        if task is not None:
            self._tasks[task_id] = None
            self._dirty_tasks.add(task_id)
        return task

    @handles(U.TaskSkipped, U.TaskExpired)
    def on_task_closed(self, c: sqlite3.Cursor, e: Any) -> None:
        self._close_task(uid(e.task_id))

    @handles(U.TaskCompleted)
    def on_task_done(self, c: sqlite3.Cursor, e: Any) -> None:
        user_id, now = uid(e.originator_id), ts(e.timestamp)
        task = self._close_task(uid(e.task_id))
        if task is not None:
            self._add(user_id, task[1], {f"labels_{task[0]}": 1})
        if user_id in self._streaks:
            row = self._streaks[user_id]
        else:
            row = self._c().execute("SELECT last_activity, streak_start, streak_days"
                                    " FROM user_streaks WHERE user_id = ?", (user_id,)).fetchone()
        last, start = (row[0], row[1]) if row else (None, None)
        days, start = next_streak(last, start, now)
        self._streaks[user_id] = (now, start, days)
        self._dirty_streaks.add(user_id)


def _contribution(m: Mapping[str, Any]) -> dict[str, float]:
    """The counters a message adds to its author's hour row."""
    out: dict[str, float] = {}
    if m["spam_tree"]:
        out["spam_prompts"] = 1  # OA counts aborted trees whether the prompt is deleted or not
    if not m["deleted"]:
        out[m["kind"]] = 1
        if m["accepted"]:
            out["accepted_" + m["kind"]] = 1
        out.update(m["emojis"])
        out.update(m["labels"])
    return out


def _label_votes(labels: Mapping[str, float]) -> dict[str, float]:
    """One submission's share of the troll counters."""
    out: dict[str, float] = {}
    for label, value in labels.items():
        if label in TROLL_LABELS:
            out[label] = label_int(value)
        elif label in MEAN_LABELS:
            out[f"{label}_sum"], out[f"{label}_n"] = value, 1
    return out


def _plus(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return {k: v for k, v in out.items() if v}


def _minus(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0) - b.get(k, 0) for k in a.keys() | b.keys()}


def next_streak(last_activity: float | None, streak_start: float | None,
                now: float) -> tuple[int, float]:
    """OA's streak rule at a completed task: (streak_days, streak_start) afterwards.

    OA's periodic job clears the streak of a user inactive for more than 36 hours; at the
    next activity that reset has happened, so the streak starts again. A missing (or future)
    start begins a new streak of 0 days; otherwise the streak is the whole days since it began.
    """
    if last_activity is not None and last_activity < now - STREAK_TIMEOUT:
        streak_start = None
    if streak_start is None or streak_start > now:
        return 0, now
    return int((now - streak_start) // DAY), streak_start


# ---------------------------------------------------------------- scores
def leader_score(s: Mapping[str, float]) -> int:
    """OA's UserStats.compute_leader_score (rankings_good is never computed: 0)."""
    return int(
        int(s["prompts"] * 0.1) + s["replies_assistant"] * 4 + s["replies_prompter"]
        + s["labels_simple"] + s["labels_full"] * 2 + s["rankings_total"]
        + int(s["accepted_prompts"] * 0.1) + s["accepted_replies_assistant"] * 4
        + s["accepted_replies_prompter"] + s["reply_ranked_1"] * 9 + s["reply_ranked_2"] * 3
        + s["reply_ranked_3"])


def level(score: int) -> int:
    """Number of level thresholds the score reaches: 0 -> 1, 100 -> 11, 1000 -> 39."""
    return bisect_right(LEVEL_THRESHOLDS, score)


def troll_score(s: Mapping[str, float]) -> int:
    """OA's TrollStats.compute_troll_score."""
    return int(3 * s["red_flags"] - s["upvotes"] + s["downvotes"] + s["spam_prompts"]
               + sum(s[label] for label in TROLL_LABELS if label != "spam"))


def has_leader_stats(s: Mapping[str, float]) -> bool:
    return any(s[f] for f in LEADER_FIELDS)


def has_troll_stats(s: Mapping[str, float]) -> bool:
    # Counts only: a float sum may keep a rounding residue after its labels are gone.
    return any(s[f] for f in TROLL_FIELDS if not f.endswith("_sum"))
