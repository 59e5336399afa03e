"""Users and the tasks handed to them (from the User aggregate's events).

A task row is ``open`` until it is done, skipped or expired; open reply tasks issued
recently reserve their parent message (see projections.availability).
"""

from __future__ import annotations

import sqlite3

from domain.user import User as U
from projections.base import Projection, handles, ts, uid

_PROFILE = ("display_name", "enabled", "show_on_leaderboard", "tos_accepted_at", "notes", "deleted")


class UsersProjection(Projection):
    name = "users"
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
            result_id TEXT, skip_reason TEXT, updated_at REAL NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS tasks_open ON tasks (status, message_id)",
        "CREATE INDEX IF NOT EXISTS tasks_user ON tasks (user_id, status)",
    )

    @handles(U.Registered)
    def on_registered(self, c: sqlite3.Cursor, e: U.Registered) -> None:
        c.execute("INSERT INTO users VALUES (?,?,?,?,?,1,0,1,NULL,'',?)",
                  (uid(e.originator_id), uid(e.client_id), e.auth_method, e.username,
                   e.display_name, ts(e.timestamp)))

    @handles(U.ProfileUpdated)
    def on_profile(self, c: sqlite3.Cursor, e: U.ProfileUpdated) -> None:
        for name in _PROFILE:
            value = getattr(e, name)
            if value is None:
                continue
            if name == "tos_accepted_at":
                value = ts(value)
            elif isinstance(value, bool):
                value = int(value)
            c.execute(f"UPDATE users SET {name} = ? WHERE user_id = ?", (value, uid(e.originator_id)))

    @handles(U.TaskIssued)
    def on_issued(self, c: sqlite3.Cursor, e: U.TaskIssued) -> None:
        c.execute("INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?,NULL,'open',NULL,NULL,?)",
                  (uid(e.task_id), uid(e.originator_id), e.task_type, uid(e.tree_id),
                   uid(e.message_id), e.lang, e.payload.get("mode"), ts(e.issued_at),
                   ts(e.expires_at), ts(e.issued_at)))

    @handles(U.TaskAcknowledged)
    def on_ack(self, c: sqlite3.Cursor, e: U.TaskAcknowledged) -> None:
        c.execute("UPDATE tasks SET frontend_message_id = ?, updated_at = ? WHERE task_id = ?",
                  (e.frontend_message_id, ts(e.timestamp), uid(e.task_id)))

    @handles(U.TaskSkipped)
    def on_skipped(self, c: sqlite3.Cursor, e: U.TaskSkipped) -> None:
        c.execute("UPDATE tasks SET status = 'skipped', skip_reason = ?, updated_at = ?"
                  " WHERE task_id = ?", (e.reason, ts(e.timestamp), uid(e.task_id)))

    @handles(U.TaskCompleted)
    def on_completed(self, c: sqlite3.Cursor, e: U.TaskCompleted) -> None:
        c.execute("UPDATE tasks SET status = 'done', result_id = ?, updated_at = ? WHERE task_id = ?",
                  (uid(e.result_id), ts(e.timestamp), uid(e.task_id)))

    @handles(U.TaskExpired)
    def on_expired(self, c: sqlite3.Cursor, e: U.TaskExpired) -> None:
        c.execute("UPDATE tasks SET status = 'expired', updated_at = ? WHERE task_id = ?",
                  (ts(e.timestamp), uid(e.task_id)))
