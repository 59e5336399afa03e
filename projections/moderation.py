"""The moderators' queue: flagged messages (OA's flagged_message table) and purges.

A message is flagged by its first report (a ``LabelsSubmitted`` of kind report) and
stays in the queue until a moderator processes it (``ReportsProcessed``); a report that
comes after processing puts it back. ``purged_messages`` lists what purges removed, so
the statistics can leave purged messages out as OA's hard delete does.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from domain.model.labels import LabelKind
from domain.model.tree import ConversationTree
from projections.base import Projection, handles


class ModerationProjection(Projection):
    name = "moderation"
    views = True  # ids as text
    tables = ("flagged_messages", "purged_messages")
    ddl = (
        """CREATE TABLE IF NOT EXISTS flagged_messages (
            message_id TEXT PRIMARY KEY, tree_id TEXT NOT NULL, created_at REAL NOT NULL,
            processed INTEGER NOT NULL, processed_at REAL) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS purged_messages (
            message_id TEXT PRIMARY KEY, tree_id TEXT NOT NULL, purged_at REAL NOT NULL,
            reason TEXT NOT NULL) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS flagged_queue ON flagged_messages (processed, created_at)",
    )

    @handles(ConversationTree.LabelsSubmitted)
    def on_labels(self, c: sqlite3.Cursor, e: Any) -> None:
        if e.kind != LabelKind.REPORT.value:
            return
        c.execute(
            "INSERT INTO flagged_messages VALUES (?, ?, ?, 0, NULL) ON CONFLICT (message_id)"
            " DO UPDATE SET processed = 0, processed_at = NULL",
            (str(e.message_id), str(e.originator_id), e.timestamp.timestamp()),
        )

    @handles(ConversationTree.ReportsProcessed)
    def on_processed(self, c: sqlite3.Cursor, e: Any) -> None:
        c.execute(
            "UPDATE flagged_messages SET processed = 1, processed_at = ? WHERE message_id = ?",
            (e.timestamp.timestamp(), str(e.message_id)),
        )

    @handles(ConversationTree.MessagesPurged)
    def on_purged(self, c: sqlite3.Cursor, e: Any) -> None:
        at = e.timestamp.timestamp()
        c.executemany(
            "INSERT OR IGNORE INTO purged_messages VALUES (?, ?, ?, ?)",
            [(str(i), str(e.originator_id), at, e.reason) for i in e.message_ids],
        )
