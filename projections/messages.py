"""Messages as OA's `message` table has them, plus who did what to each message.

`messages` carries every field of OA's Message (children and ranking counts, review
state, consensus rank, emoji counts, label sums and counts); `message_emojis`, `labels`
and `rankings` keep per-user participation, which task availability needs (who skipped,
labelled or ranked what). Replies are found through messages.parent_id/user_id.
"""

from __future__ import annotations

import sqlite3
from typing import Any
from uuid import UUID

from domain.tree import ConversationTree as T
from projections.base import Projection, dumps, handles, ts, uid


class MessagesProjection(Projection):
    name = "messages"
    tables = ("messages", "message_emojis", "labels", "rankings")
    ddl = (
        """CREATE TABLE IF NOT EXISTS messages (
            message_id TEXT PRIMARY KEY, tree_id TEXT NOT NULL, parent_id TEXT,
            role TEXT NOT NULL, depth INTEGER NOT NULL, lang TEXT NOT NULL, text TEXT NOT NULL,
            user_id TEXT, client_id TEXT, frontend_message_id TEXT, created_at REAL NOT NULL,
            synthetic INTEGER NOT NULL, model_name TEXT,
            children_count INTEGER NOT NULL DEFAULT 0,
            review_count INTEGER NOT NULL DEFAULT 0, review_result INTEGER, review_score REAL,
            ranking_count INTEGER NOT NULL DEFAULT 0,
            rankings_received INTEGER NOT NULL DEFAULT 0, rank INTEGER,
            emojis TEXT NOT NULL DEFAULT '{}', label_sums TEXT NOT NULL DEFAULT '{}',
            label_counts TEXT NOT NULL DEFAULT '{}',
            deleted INTEGER NOT NULL DEFAULT 0, edited INTEGER NOT NULL DEFAULT 0,
            revision INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS message_emojis (
            message_id TEXT NOT NULL, emoji TEXT NOT NULL, user_id TEXT NOT NULL,
            PRIMARY KEY (message_id, emoji, user_id)) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS labels (
            message_id TEXT NOT NULL, user_id TEXT NOT NULL, kind TEXT NOT NULL,
            label TEXT NOT NULL, value REAL NOT NULL, task_id TEXT, created_at REAL NOT NULL,
            PRIMARY KEY (message_id, user_id, kind, label)) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS rankings (
            parent_id TEXT NOT NULL, user_id TEXT NOT NULL, tree_id TEXT NOT NULL,
            ranked TEXT NOT NULL, not_rankable INTEGER NOT NULL, task_id TEXT,
            created_at REAL NOT NULL, PRIMARY KEY (parent_id, user_id)) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS messages_tree ON messages (tree_id)",
        "CREATE INDEX IF NOT EXISTS messages_parent ON messages (parent_id, user_id)",
        "CREATE INDEX IF NOT EXISTS messages_user ON messages (user_id)",
        "CREATE INDEX IF NOT EXISTS rankings_user ON rankings (user_id, created_at)",
    )

    def _insert(self, c: sqlite3.Cursor, e: Any, message_id: UUID, parent_id: UUID | None,
                role: str, depth: int) -> None:
        c.execute(
            "INSERT INTO messages (message_id, tree_id, parent_id, role, depth, lang, text, user_id,"
            " client_id, frontend_message_id, created_at, synthetic, model_name, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (uid(message_id), uid(e.originator_id), uid(parent_id), role, depth, e.lang, e.text,
             uid(e.user_id), uid(e.client_id), e.frontend_message_id, ts(e.timestamp),
             int(e.synthetic), e.model_name, ts(e.timestamp)))

    @handles(T.TreeStarted)
    def on_started(self, c: sqlite3.Cursor, e: T.TreeStarted) -> None:
        self._insert(c, e, e.originator_id, None, "prompter", 0)

    @handles(T.ReplyAdded)
    def on_reply(self, c: sqlite3.Cursor, e: T.ReplyAdded) -> None:
        self._insert(c, e, e.message_id, e.parent_id, e.role, e.depth)
        c.execute("UPDATE messages SET children_count = children_count + 1, updated_at = ?"
                  " WHERE message_id = ?", (ts(e.timestamp), uid(e.parent_id)))

    @handles(T.LabelsSubmitted)
    def on_labels(self, c: sqlite3.Cursor, e: T.LabelsSubmitted) -> None:
        message_id, user_id = uid(e.message_id), uid(e.user_id) or ""
        if e.kind == "task":
            c.execute("UPDATE messages SET review_count = review_count + 1 WHERE message_id = ?",
                      (message_id,))
        else:
            # Free and report labels: the user's latest submission replaces the earlier one.
            c.execute("DELETE FROM labels WHERE message_id = ? AND user_id = ? AND kind != 'task'",
                      (message_id, user_id))
        c.executemany("INSERT OR REPLACE INTO labels VALUES (?,?,?,?,?,?,?)",
                      [(message_id, user_id, e.kind, name, value, uid(e.task_id), ts(e.timestamp))
                       for name, value in e.labels.items()])
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for name, value in c.execute(
                "SELECT label, value FROM labels WHERE message_id = ? ORDER BY label, user_id, kind",
                (message_id,)).fetchall():
            sums[name] = sums.get(name, 0.0) + value
            counts[name] = counts.get(name, 0) + 1
        c.execute("UPDATE messages SET label_sums = ?, label_counts = ?, updated_at = ?"
                  " WHERE message_id = ?", (dumps(sums), dumps(counts), ts(e.timestamp), message_id))

    @handles(T.ReviewDecided)
    def on_review(self, c: sqlite3.Cursor, e: T.ReviewDecided) -> None:
        c.execute("UPDATE messages SET review_result = ?, review_score = ?, updated_at = ?"
                  " WHERE message_id = ?",
                  (int(e.accepted), e.score, ts(e.timestamp), uid(e.message_id)))

    @handles(T.RankingSubmitted)
    def on_ranking(self, c: sqlite3.Cursor, e: T.RankingSubmitted) -> None:
        ranked = [uid(i) for i in e.ranked_message_ids]
        c.execute("INSERT INTO rankings VALUES (?,?,?,?,?,?,?)",
                  (uid(e.parent_id), uid(e.user_id) or "", uid(e.originator_id), dumps(ranked),
                   int(e.not_rankable), uid(e.task_id), ts(e.timestamp)))
        c.executemany("UPDATE messages SET ranking_count = ranking_count + 1 WHERE message_id = ?",
                      [(i,) for i in ranked])
        c.execute("UPDATE messages SET rankings_received = rankings_received + 1, updated_at = ?"
                  " WHERE message_id = ?", (ts(e.timestamp), uid(e.parent_id)))

    @handles(T.TreeScored)
    def on_scored(self, c: sqlite3.Cursor, e: T.TreeScored) -> None:
        for parent_id, order in e.ranks.items():
            c.execute("UPDATE messages SET rank = NULL WHERE parent_id = ?", (uid(UUID(parent_id)),))
            c.executemany("UPDATE messages SET rank = ? WHERE message_id = ?",
                          [(i, uid(child)) for i, child in enumerate(order)])

    @handles(T.MessageDeleted, T.MessageUndeleted)
    def on_deleted(self, c: sqlite3.Cursor, e: Any) -> None:
        deleted = int(isinstance(e, T.MessageDeleted))
        c.executemany("UPDATE messages SET deleted = ?, updated_at = ? WHERE message_id = ?",
                      [(deleted, ts(e.timestamp), uid(i)) for i in e.message_ids])

    @handles(T.MessageEdited)
    def on_edited(self, c: sqlite3.Cursor, e: T.MessageEdited) -> None:
        c.execute("UPDATE messages SET text = ?, edited = 1, revision = ?, updated_at = ?"
                  " WHERE message_id = ?", (e.text, e.revision, ts(e.timestamp), uid(e.message_id)))

    @handles(T.EmojiToggled)
    def on_emoji(self, c: sqlite3.Cursor, e: T.EmojiToggled) -> None:
        key = (uid(e.message_id), e.emoji, uid(e.user_id) or "")
        if e.added:
            c.execute("INSERT OR IGNORE INTO message_emojis VALUES (?,?,?)", key)
        else:
            c.execute("DELETE FROM message_emojis WHERE message_id = ? AND emoji = ? AND user_id = ?",
                      key)
        counts = dict(c.execute("SELECT emoji, count(*) FROM message_emojis WHERE message_id = ?"
                                " GROUP BY emoji", key[:1]).fetchall())
        c.execute("UPDATE messages SET emojis = ?, updated_at = ? WHERE message_id = ?",
                  (dumps(counts), ts(e.timestamp), key[0]))
