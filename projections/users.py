"""Users and the tasks handed to them (from the User aggregate's events).

A task row is ``open`` until it is done, skipped or expired; open reply tasks issued
recently reserve their parent message (see projections.availability). Task rows live in
a write-back cache (projections.writeback): a task issued, acknowledged and completed
within one batch is one INSERT. Of the payload a task carries (the whole conversation,
kilobytes) only ``mode`` is kept, so only ``mode`` is decoded (TaskIssuedView).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import msgspec

from domain.model.user import User
from projections.base import Projection, handles, ts, uid
from projections.writeback import RowCache

TASK_COLUMNS = (
    "task_id",
    "user_id",
    "type",
    "tree_id",
    "message_id",
    "lang",
    "mode",
    "issued_at",
    "expires_at",
    "frontend_message_id",
    "status",
    "result_id",
    "skip_reason",
    "updated_at",
)
FRONTEND, STATUS, RESULT, SKIP_REASON, UPDATED = (
    TASK_COLUMNS.index(c)
    for c in ("frontend_message_id", "status", "result_id", "skip_reason", "updated_at")
)


class TaskPayloadView(msgspec.Struct):
    """The one part of a task's payload a read model keeps; the JSON parser skips the rest
    (the conversation, labels and help texts: kilobytes per task)."""

    mode: Any = None

    def get(self, key: str, default: Any = None) -> Any:  # reads like the payload dict
        return getattr(self, key, default)


class TaskIssuedView(msgspec.Struct, kw_only=True):
    """TaskIssued as the read models need it. A projection that declares the same view
    (``views = {User.TaskIssued: TaskIssuedView}``) shares its decoding with this one."""

    originator_id: str = ""
    originator_version: int = 0
    timestamp: datetime
    client_id: str | None = None
    task_id: str
    task_type: str
    tree_id: str | None
    message_id: str | None
    lang: str
    payload: TaskPayloadView
    issued_at: datetime
    expires_at: datetime


_PROFILE = ("display_name", "enabled", "show_on_leaderboard", "tos_accepted_at", "notes", "deleted")


class UsersProjection(Projection):
    name = "users"
    views = {User.TaskIssued: TaskIssuedView}
    replay_indexes = ()  # handlers look rows up by key only
    replay_cost = 2.5
    tables = ("users", "tasks")
    ddl = (
        """CREATE TABLE IF NOT EXISTS users (
            user_id TEXT PRIMARY KEY, client_id TEXT, auth_method TEXT NOT NULL,
            username TEXT NOT NULL, display_name TEXT NOT NULL, enabled INTEGER NOT NULL,
            deleted INTEGER NOT NULL, show_on_leaderboard INTEGER NOT NULL,
            tos_accepted_at REAL, notes TEXT NOT NULL, created_at REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS tasks (
            task_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, type TEXT NOT NULL, tree_id TEXT,
            message_id TEXT, lang TEXT NOT NULL, mode TEXT, issued_at REAL NOT NULL,
            expires_at REAL NOT NULL, frontend_message_id TEXT, status TEXT NOT NULL,
            result_id TEXT, skip_reason TEXT, updated_at REAL NOT NULL) WITHOUT ROWID""",
        # Reply reservations and expiry look up open tasks only, and few tasks are open:
        # a partial index keeps the rest out (most tasks are done before their batch is
        # written, so they never enter it). No query looks tasks up by user (the User
        # aggregate answers that), so there is no index for it: each is paid at every write.
        "CREATE INDEX IF NOT EXISTS tasks_open ON tasks (message_id) WHERE status = 'open'",
    )

    # ------------------------------------------------------------------ the batch
    def _setup(self) -> None:
        if "_tasks" not in vars(self):  # here, not in __init__: subclasses need not call it
            # Keyed by task id alone (no rowid B-tree beside the key's), filled in key order.
            self._tasks = RowCache("tasks", TASK_COLUMNS, TASK_COLUMNS[FRONTEND:], clustered=True)

    def begin_batch(self, cursor: sqlite3.Cursor) -> None:
        self._setup()
        self._tasks.begin(cursor)

    def flush(self, cursor: sqlite3.Cursor) -> None:
        self._tasks.flush()

    end_batch = flush

    def abort_batch(self) -> None:
        self._setup()
        self._tasks.discard()

    # ------------------------------------------------------------------ handlers
    @handles(User.Registered)
    def on_registered(self, c: sqlite3.Cursor, e: User.Registered) -> None:
        c.execute(
            "INSERT INTO users VALUES (?,?,?,?,?,1,0,1,NULL,'',?)",
            (
                uid(e.originator_id),
                uid(e.client_id),
                e.auth_method,
                e.username,
                e.display_name,
                ts(e.timestamp),
            ),
        )

    @handles(User.ProfileUpdated)
    def on_profile(self, c: sqlite3.Cursor, e: User.ProfileUpdated) -> None:
        for name in _PROFILE:
            value = getattr(e, name)
            if value is None:
                continue
            if name == "tos_accepted_at":
                value = ts(value)
            elif isinstance(value, bool):
                value = int(value)
            c.execute(
                f"UPDATE users SET {name} = ? WHERE user_id = ?", (value, uid(e.originator_id))
            )

    @handles(User.MergedInto)
    def on_merged_into(self, c: sqlite3.Cursor, e: User.MergedInto) -> None:
        """The source is disabled and deleted; its tasks are the destination's (cached
        task rows still name the source: written, then forgotten)."""
        source, dest = uid(e.originator_id), uid(e.destination_user_id)
        c.execute(
            "UPDATE users SET enabled = 0, deleted = 1, show_on_leaderboard = 0 WHERE user_id = ?",
            (source,),
        )
        self._tasks.flush()
        self._tasks.discard()
        self._tasks.begin(c)
        c.execute("UPDATE tasks SET user_id = ? WHERE user_id = ?", (dest, source))

    @handles(User.TaskIssued)
    def on_issued(self, c: sqlite3.Cursor, e: TaskIssuedView) -> None:
        issued = e.issued_at.timestamp()
        self._tasks.add(
            [
                e.task_id,
                e.originator_id,
                e.task_type,
                e.tree_id,
                e.message_id,
                e.lang,
                e.payload.mode,
                issued,
                e.expires_at.timestamp(),
                None,
                "open",
                None,
                None,
                issued,
            ]
        )

    # The task events are two thirds of the log: each handler does its lookup inline.
    @handles(User.TaskAcknowledged)
    def on_ack(self, c: sqlite3.Cursor, e: Any) -> None:
        row = self._task(e.task_id)
        if row is not None:
            row[FRONTEND] = e.frontend_message_id
            row[UPDATED] = e.timestamp.timestamp()

    @handles(User.TaskSkipped)
    def on_skipped(self, c: sqlite3.Cursor, e: Any) -> None:
        row = self._task(e.task_id)
        if row is not None:
            row[STATUS], row[SKIP_REASON] = "skipped", e.reason
            row[UPDATED] = e.timestamp.timestamp()

    @handles(User.TaskCompleted)
    def on_completed(self, c: sqlite3.Cursor, e: Any) -> None:
        row = self._task(e.task_id)
        if row is not None:
            row[STATUS], row[RESULT] = "done", e.result_id
            row[UPDATED] = e.timestamp.timestamp()

    @handles(User.TaskExpired)
    def on_expired(self, c: sqlite3.Cursor, e: Any) -> None:
        row = self._task(e.task_id)
        if row is not None:
            row[STATUS] = "expired"
            row[UPDATED] = e.timestamp.timestamp()

    def _task(self, task_id: Any) -> list[Any] | None:
        """A task row (pending in this batch or already written), marked changed."""
        tasks = self._tasks
        task_id = uid(task_id)
        row = tasks.rows.get(task_id) or tasks.get(task_id)
        if row is not None:
            tasks.changed.add(task_id)
        return row
