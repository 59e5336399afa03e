"""Messages as OA's `message` table has them, plus who did what to each message.

`messages` carries OA's Message fields that something reads (children and ranking counts,
review state, consensus rank, emoji counts); `message_emojis`, `labels`
and `rankings` keep per-user participation, which task availability needs (who skipped,
labelled or ranked what). Replies are found through messages.parent_id/user_id;
`reviewers` lists who reviewed a message with a task ("id,id,"), so the review pool
excludes a user's earlier reviews without a lookup in `labels` per candidate.
A `labels` row is one submission, its values a JSON object, as OA's text_labels has it
(a row per value made label rows most of a replay's writes). Schema version 2 dropped the
`label_sums`/`label_counts` columns of `messages`, which nothing read.

Handlers change rows in write-back caches (projections.writeback) and the runner flushes
them at the end of the batch, or earlier when a projection that reads these tables is
about to see the event.
"""

from __future__ import annotations

import sqlite3
from typing import Any
from uuid import UUID

import msgspec

from domain.model.labels import LabelKind
from domain.model.tree import ConversationTree
from projections.base import Projection, handles
from projections.user_merge import MessagesMerge
from projections.writeback import RowCache

COLUMNS = (
    "message_id",
    "tree_id",
    "parent_id",
    "role",
    "depth",
    "lang",
    "text",
    "user_id",
    "client_id",
    "frontend_message_id",
    "created_at",
    "synthetic",
    "model_name",
    "children_count",
    "review_count",
    "review_result",
    "review_score",
    "ranking_count",
    "rankings_received",
    "rank",
    "emojis",
    "deleted",
    "edited",
    "revision",
    "updated_at",
    "reviewers",
)
(
    TEXT,
    CHILDREN,
    REVIEWS,
    RESULT,
    SCORE,
    RANKED,
    RECEIVED,
    RANK,
    EMOJIS,
    DELETED,
    EDITED,
    REVISION,
    UPDATED,
    REVIEWERS,
) = (
    COLUMNS.index(c)
    for c in (
        "text",
        "children_count",
        "review_count",
        "review_result",
        "review_score",
        "ranking_count",
        "rankings_received",
        "rank",
        "emojis",
        "deleted",
        "edited",
        "revision",
        "updated_at",
        "reviewers",
    )
)
MUTABLE = COLUMNS[TEXT : TEXT + 1] + COLUMNS[CHILDREN:]

Submission = tuple[str, str]  # (user_id, label kind): one labels row of a message
_encode = msgspec.json.Encoder(order="sorted").encode


class MessagesProjection(MessagesMerge, Projection):
    name = "messages"
    views = True
    replay_indexes = ("messages_children",)  # on_scored: the children of a parent
    replay_cost = 3.0
    schema_version = 2  # 2: without label_sums and label_counts
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
            emojis TEXT NOT NULL DEFAULT '{}',
            deleted INTEGER NOT NULL DEFAULT 0, edited INTEGER NOT NULL DEFAULT 0,
            revision INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL,
            reviewers TEXT NOT NULL DEFAULT '')""",
        """CREATE TABLE IF NOT EXISTS message_emojis (
            message_id TEXT NOT NULL, emoji TEXT NOT NULL, user_id TEXT NOT NULL,
            PRIMARY KEY (message_id, emoji, user_id)) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS labels (
            message_id TEXT NOT NULL, user_id TEXT NOT NULL, kind TEXT NOT NULL,
            labels TEXT NOT NULL, task_id TEXT, created_at REAL NOT NULL,
            PRIMARY KEY (message_id, user_id, kind)) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS rankings (
            parent_id TEXT NOT NULL, user_id TEXT NOT NULL, tree_id TEXT NOT NULL,
            ranked TEXT NOT NULL, not_rankable INTEGER NOT NULL, task_id TEXT,
            created_at REAL NOT NULL, PRIMARY KEY (parent_id, user_id)) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS messages_tree ON messages (tree_id)",
        # Replies of a parent: who wrote them (one reply per user), and whether they count.
        "CREATE INDEX IF NOT EXISTS messages_children ON messages"
        " (parent_id, user_id, deleted, review_result)",
        "CREATE INDEX IF NOT EXISTS messages_user ON messages (user_id)",
        # The HTTP API: a client's message by its own id (/frontend_messages), and a
        # client's messages in creation order (/messages/cursor keyset pages).
        "CREATE INDEX IF NOT EXISTS messages_frontend ON messages (client_id, frontend_message_id)",
        "CREATE INDEX IF NOT EXISTS messages_client_created ON messages"
        " (client_id, created_at, message_id)",
        # Task availability's pools (projections.availability), each a covering index of
        # the few messages it can pick from, so a query reads neither texts nor the rest.
        "CREATE INDEX IF NOT EXISTS messages_unreviewed ON messages"
        " (tree_id, lang, message_id, role, parent_id, user_id, reviewers)"
        " WHERE review_result IS NULL AND deleted = 0",
        "CREATE INDEX IF NOT EXISTS messages_accepted ON messages"
        " (tree_id, lang, depth, message_id, role) WHERE review_result = 1 AND deleted = 0",
        "CREATE INDEX IF NOT EXISTS messages_rankable ON messages"
        " (tree_id, parent_id, role, user_id)"
        " WHERE review_result = 1 AND deleted = 0 AND parent_id IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS rankings_user ON rankings (user_id, created_at)",
    )

    # ------------------------------------------------------------------ the batch
    def _setup(self) -> None:
        # Here, not in __init__: subclasses (tests) need not call it.
        if "_rows" not in vars(self):
            self._rows = RowCache("messages", COLUMNS, MUTABLE)
            # message -> (user, label kind) -> [labels, task_id, created_at]
            self._labels: dict[str, dict[Submission, list[Any]]] = {}
            self._labels_changed: dict[str, set[Submission]] = {}
            self._rankings: list[tuple] = []
            self._children: dict[str, list[str]] = {}  # replies added in this batch

    def begin_batch(self, cursor: sqlite3.Cursor) -> None:
        self._setup()
        self._rows.begin(cursor)
        if not self._rows.rows or len(self._labels) > 50_000:
            self._labels.clear()  # kept as long as the rows are, for the same reasons
        self._labels_changed.clear()
        self._rankings.clear()
        self._children.clear()

    def flush(self, cursor: sqlite3.Cursor) -> None:
        if self._labels_changed:
            upserts, deletes = [], []
            for message_id, keys in self._labels_changed.items():
                submissions = self._labels[message_id]
                for key in keys:
                    if key in submissions:
                        labels, task_id, at = submissions[key]
                        upserts.append((message_id, *key, _encode(labels).decode(), task_id, at))
                    else:
                        deletes.append((message_id, *key))
            deletes.sort()
            upserts.sort()  # key order: neighbouring rows share B-tree pages
            cursor.executemany(
                "DELETE FROM labels WHERE message_id = ? AND user_id = ? AND kind = ?", deletes
            )
            cursor.executemany("INSERT OR REPLACE INTO labels VALUES (?,?,?,?,?,?)", upserts)
            self._labels_changed.clear()
        self._rows.flush()
        if self._rankings:
            cursor.executemany("INSERT INTO rankings VALUES (?,?,?,?,?,?,?)", self._rankings)
            self._rankings.clear()

    end_batch = flush

    def abort_batch(self) -> None:
        self._setup()
        self._rows.discard()
        self._labels.clear()
        self._labels_changed.clear()
        self._rankings.clear()
        self._children.clear()

    def _touch(self, message_id: str, at: float) -> list[Any] | None:
        """The message's row, marked changed at ``at``; None for an unknown message."""
        row = self._rows.get(message_id)
        if row is not None:
            row[UPDATED] = at
            self._rows.changed.add(message_id)
        return row

    # ------------------------------------------------------------------ handlers
    def _insert(
        self, e: Any, message_id: str, parent_id: str | None, role: str, depth: int
    ) -> None:
        at = e.timestamp.timestamp()
        self._labels[message_id] = {}  # no labels before the message: nothing to look up
        self._rows.add(
            [
                message_id,
                e.originator_id,
                parent_id,
                role,
                depth,
                e.lang,
                e.text,
                e.user_id,
                e.client_id,
                e.frontend_message_id,
                at,
                int(e.synthetic),
                e.model_name,
                0,
                0,
                None,
                None,
                0,
                0,
                None,
                "{}",
                0,
                0,
                0,
                at,
                "",
            ]
        )

    @handles(ConversationTree.TreeStarted)
    def on_started(self, c: sqlite3.Cursor, e: Any) -> None:
        self._insert(e, e.originator_id, None, "prompter", 0)

    @handles(ConversationTree.ReplyAdded)
    def on_reply(self, c: sqlite3.Cursor, e: Any) -> None:
        self._insert(e, e.message_id, e.parent_id, e.role, e.depth)
        self._children.setdefault(e.parent_id, []).append(e.message_id)
        parent = self._touch(e.parent_id, e.timestamp.timestamp())
        if parent is not None:
            parent[CHILDREN] += 1

    @handles(ConversationTree.LabelsSubmitted)
    def on_labels(self, c: sqlite3.Cursor, e: Any) -> None:
        message_id, user_id, label_kind = e.message_id, e.user_id or "", e.kind
        submissions = self._labels.get(message_id)
        if submissions is None:
            submissions = self._labels[message_id] = {
                (user, k): [msgspec.json.decode(labels), task_id, at]
                for user, k, labels, task_id, at in c.execute(
                    "SELECT user_id, kind, labels, task_id, created_at FROM labels"
                    " WHERE message_id = ?",
                    (message_id,),
                )
            }
        changed = self._labels_changed.setdefault(message_id, set())
        at = e.timestamp.timestamp()
        row = self._touch(message_id, at)
        labels = dict(e.labels)
        if label_kind == LabelKind.TASK:
            if row is not None:
                row[REVIEWS] += 1
                row[REVIEWERS] += user_id + ","
            earlier = submissions.get((user_id, label_kind))
            if earlier is not None:  # the domain takes one review per user; merge as OA would
                labels = earlier[0] | labels
        else:
            # Free labels and reports: the user's latest submission replaces the earlier one.
            for key in [k for k in submissions if k[0] == user_id and k[1] != LabelKind.TASK]:
                del submissions[key]
                changed.add(key)
        submissions[user_id, label_kind] = [labels, e.task_id, at]
        changed.add((user_id, label_kind))

    @handles(ConversationTree.ReviewDecided)
    def on_review(self, c: sqlite3.Cursor, e: Any) -> None:
        row = self._touch(e.message_id, e.timestamp.timestamp())
        if row is not None:
            row[RESULT], row[SCORE] = int(e.accepted), e.score

    @handles(ConversationTree.RankingSubmitted)
    def on_ranking(self, c: sqlite3.Cursor, e: Any) -> None:
        at = e.timestamp.timestamp()
        self._rankings.append(
            (
                e.parent_id,
                e.user_id or "",
                e.originator_id,
                _encode(e.ranked_message_ids).decode(),
                int(e.not_rankable),
                e.task_id,
                at,
            )
        )
        rows = self._rows
        for message_id in e.ranked_message_ids:
            row = rows.get(message_id)
            if row is not None:
                row[RANKED] += 1
                rows.changed.add(message_id)
        parent = self._touch(e.parent_id, at)
        if parent is not None:
            parent[RECEIVED] += 1

    @handles(ConversationTree.TreeScored, ConversationTree.RanksImported)
    def on_scored(self, c: sqlite3.Cursor, e: Any) -> None:
        rows = self._rows
        for parent_id, order in e.ranks.items():
            parent_id = str(UUID(parent_id))
            # The children in the table, and those of this batch that may not be there yet.
            children = {
                child
                for (child,) in c.execute(
                    "SELECT message_id FROM messages WHERE parent_id = ?", (parent_id,)
                )
            }
            children.update(self._children.get(parent_id, ()))
            for child in sorted(children):
                row = rows.get(child)
                if row is not None and row[RANK] is not None:
                    row[RANK] = None
                    rows.changed.add(child)
            for i, child in enumerate(order):
                row = rows.get(child)
                if row is not None:
                    row[RANK] = i
                    rows.changed.add(child)

    @handles(ConversationTree.MessageDeleted)
    def on_deleted(self, c: sqlite3.Cursor, e: Any) -> None:
        self._set_deleted(e, 1)

    @handles(ConversationTree.MessageUndeleted)
    def on_undeleted(self, c: sqlite3.Cursor, e: Any) -> None:
        self._set_deleted(e, 0)

    @handles(ConversationTree.MessagesPurged)
    def on_purged(self, c: sqlite3.Cursor, e: Any) -> None:
        """Deleted for good, and the text is gone from the read model (the log keeps it)."""
        self._set_deleted(e, 1)
        for message_id in e.message_ids:
            row = self._rows.get(message_id)
            if row is not None:
                row[TEXT] = ""

    def _set_deleted(self, e: Any, deleted: int) -> None:
        at = e.timestamp.timestamp()
        for message_id in e.message_ids:
            row = self._touch(message_id, at)
            if row is not None:
                row[DELETED] = deleted

    @handles(ConversationTree.MessageEdited)
    def on_edited(self, c: sqlite3.Cursor, e: Any) -> None:
        row = self._touch(e.message_id, e.timestamp.timestamp())
        if row is not None:
            row[TEXT], row[EDITED], row[REVISION] = e.text, 1, e.revision

    @handles(ConversationTree.EmojiToggled)
    def on_emoji(self, c: sqlite3.Cursor, e: Any) -> None:
        key = (e.message_id, e.emoji, e.user_id or "")
        if e.added:
            c.execute("INSERT OR IGNORE INTO message_emojis VALUES (?,?,?)", key)
        else:
            c.execute(
                "DELETE FROM message_emojis WHERE message_id = ? AND emoji = ? AND user_id = ?", key
            )
        counts = dict(
            c.execute(
                "SELECT emoji, count(*) FROM message_emojis WHERE message_id = ? GROUP BY emoji",
                key[:1],
            ).fetchall()
        )
        row = self._touch(e.message_id, e.timestamp.timestamp())
        if row is not None:
            row[EMOJIS] = _encode(counts).decode()
