"""How the replies of each model fare: acceptance, consensus rank, wins against humans.

``model_replies`` holds every reply that names a ``model_name`` (and, with no model name,
every other synthetic reply) with its review result, deletion and consensus rank.
``model_pairs`` holds, per scored parent and model, the (model reply, human reply) pairs
both ranked in that parent's consensus and how many the model reply won (a better, i.e.
lower, rank). A human reply is one that is neither: not synthetic, no model name.
Scoring again (retry, import) replaces the parent's rows. The projection reads only its
own tables.
"""

from __future__ import annotations

import sqlite3
from typing import Any
from uuid import UUID

from domain.model.tree import ConversationTree
from projections.base import Projection, handles, uid


class ModelStatsProjection(Projection):
    name = "model_stats"
    replay_indexes = ("model_replies_parent",)  # on_scored: the replies of a parent
    replay_cost = 0.5
    views = True  # handlers take ids as text, so they accept log views and domain events
    tables = ("model_replies", "model_pairs")
    ddl = (
        """CREATE TABLE IF NOT EXISTS model_replies (
            message_id TEXT PRIMARY KEY, model_name TEXT, parent_id TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0, review_result INTEGER, rank INTEGER)""",
        """CREATE TABLE IF NOT EXISTS model_pairs (
            parent_id TEXT NOT NULL, model_name TEXT NOT NULL, pairs INTEGER NOT NULL,
            wins INTEGER NOT NULL, PRIMARY KEY (parent_id, model_name)) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS model_replies_parent ON model_replies (parent_id)",
        "CREATE INDEX IF NOT EXISTS model_replies_model ON model_replies (model_name)",
    )

    def __init__(self) -> None:
        # The synthetic replies (message id -> parent id): few, so kept in memory, and most
        # review, deletion and scoring events cost a lookup.
        self._known: dict[str, str] | None = None
        self._parents: set[str] = set()
        self._conn: sqlite3.Connection | None = None

    def begin_batch(self, c: sqlite3.Cursor) -> None:
        if self._known is None or self._conn is not c.connection:
            self._known = dict(c.execute("SELECT message_id, parent_id FROM model_replies"))
            self._parents = set(self._known.values())
            self._conn = c.connection

    def end_batch(self, c: sqlite3.Cursor) -> None:
        pass

    def abort_batch(self) -> None:
        self._known = None

    def _ids(self, ids: list[Any]) -> list[tuple[str]]:
        known = self._known if self._known is not None else {}
        return [(i,) for i in (uid(i) for i in ids) if i in known]

    @handles(ConversationTree.ReplyAdded)
    def on_reply(self, c: sqlite3.Cursor, e: Any) -> None:
        if e.model_name or e.synthetic:
            c.execute(
                "INSERT INTO model_replies (message_id, model_name, parent_id) VALUES (?, ?, ?)",
                (uid(e.message_id), e.model_name or None, uid(e.parent_id)),
            )
            if self._known is not None:
                self._known[uid(e.message_id)] = uid(e.parent_id)
                self._parents.add(uid(e.parent_id))

    @handles(ConversationTree.ReviewDecided)
    def on_review(self, c: sqlite3.Cursor, e: Any) -> None:
        for (i,) in self._ids([e.message_id]):
            c.execute(
                "UPDATE model_replies SET review_result = ? WHERE message_id = ?",
                (int(e.accepted), i),
            )

    @handles(ConversationTree.MessageDeleted, ConversationTree.MessagesPurged)
    def on_deleted(self, c: sqlite3.Cursor, e: Any) -> None:
        c.executemany(
            "UPDATE model_replies SET deleted = 1 WHERE message_id = ?", self._ids(e.message_ids)
        )

    @handles(ConversationTree.MessageUndeleted)
    def on_undeleted(self, c: sqlite3.Cursor, e: Any) -> None:
        c.executemany(
            "UPDATE model_replies SET deleted = 0 WHERE message_id = ?", self._ids(e.message_ids)
        )

    @handles(ConversationTree.TreeScored, ConversationTree.RanksImported)
    def on_scored(self, c: sqlite3.Cursor, e: Any) -> None:
        for parent_id, order in e.ranks.items():
            parent = uid(UUID(parent_id))
            if self._known is not None and parent not in self._parents:
                continue  # human replies only: nothing here to rank or pair
            ids = [uid(i) for i in order]
            c.execute("UPDATE model_replies SET rank = NULL WHERE parent_id = ?", (parent,))
            c.executemany(
                "UPDATE model_replies SET rank = ? WHERE message_id = ?",
                [(rank, i) for rank, i in enumerate(ids)],
            )
            c.execute("DELETE FROM model_pairs WHERE parent_id = ?", (parent,))
            # Synthetic replies map to their model name (None: no model); humans are absent.
            machine = dict(
                c.execute(
                    "SELECT message_id, model_name FROM model_replies WHERE parent_id = ?",
                    (parent,),
                ).fetchall()
            )
            humans = [rank for rank, i in enumerate(ids) if i not in machine]
            tally: dict[str, list[int]] = {}
            for rank, i in enumerate(ids):
                model = machine.get(i)
                if model is None or not humans:
                    continue
                counts = tally.setdefault(model, [0, 0])
                counts[0] += len(humans)
                counts[1] += sum(1 for h in humans if rank < h)
            c.executemany(
                "INSERT INTO model_pairs VALUES (?, ?, ?, ?)",
                [(parent, model, pairs, wins) for model, (pairs, wins) in tally.items()],
            )


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def model_leaderboard(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Per model: its undeleted replies, acceptance rate among the reviewed ones, mean
    consensus rank (0 = best) among the ranked ones, and its win rate against human
    replies ranked under the same parent. Best win rate first; models never compared last."""
    rows: dict[str, dict[str, Any]] = {}
    for model, replies, reviewed, accepted, ranked, rank_sum in conn.execute(
        "SELECT model_name, count(*), count(review_result), coalesce(sum(review_result), 0),"
        " count(rank), coalesce(sum(rank), 0) FROM model_replies"
        " WHERE deleted = 0 AND model_name IS NOT NULL"
        " GROUP BY model_name"
    ):
        rows[model] = {
            "model_name": model,
            "replies": replies,
            "reviewed": reviewed,
            "accepted": accepted,
            "acceptance_rate": _ratio(accepted, reviewed),
            "ranked": ranked,
            "mean_rank": _ratio(rank_sum, ranked),
            "human_pairs": 0,
            "wins": 0,
            "win_rate": None,
        }
    for model, pairs, wins in conn.execute(
        "SELECT model_name, sum(pairs), sum(wins) FROM model_pairs GROUP BY model_name"
    ):
        row = rows.setdefault(
            model,
            {
                "model_name": model,
                "replies": 0,
                "reviewed": 0,
                "accepted": 0,
                "acceptance_rate": None,
                "ranked": 0,
                "mean_rank": None,
            },
        )
        row.update(human_pairs=pairs, wins=wins, win_rate=_ratio(wins, pairs))
    return sorted(
        rows.values(), key=lambda r: (r["win_rate"] is None, -(r["win_rate"] or 0), r["model_name"])
    )
