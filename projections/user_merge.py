"""Merged users in the read models (User.MergedInto, OA's /admin/merge_users).

A merge never rewrites the log: the source user's events keep its id. Each read model that
attributes rows to users moves the source's rows to the destination when it sees the
source's MergedInto, so what follows in the log (and a rebuild, which meets the event at
the same position) finds them under the destination. Where both users have a row for the
same key (both labelled one message, both clicked one emoji), the destination's stays: a
person counts once. Counters are summed.

The handlers are mixins of the projections that own the tables (messages, user_stats);
each first writes what its write-back caches hold and then forgets them, since cached
rows still name the source.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from typing import Any
from uuid import UUID

from eventsourcing.persistence import JSONTranscoder, StoredEvent

from api.storage.codec import MsgspecMapper
from api.storage.logdb import Location
from domain.model.catalogue import topics_of
from domain.model.user import User
from projections import log_reader
from projections.base import handles, uid
from projections.stats_rules import FIELDS


def merged(e: Any) -> tuple[str, str]:
    """(source, destination) of a MergedInto event or its log view."""
    return uid(e.originator_id), uid(e.destination_user_id)


def move_rows(c: sqlite3.Cursor, table: str, source: str, dest: str) -> None:
    """Give the source's rows of ``table`` to the destination; where the destination has
    a row with the same key already, the source's is dropped."""
    c.execute(f"UPDATE OR IGNORE {table} SET user_id = ? WHERE user_id = ?", (dest, source))
    c.execute(f"DELETE FROM {table} WHERE user_id = ?", (source,))


class MessagesMerge:
    """messages.user_id (authorship), reviewers, labels, emojis and rankings."""

    _rows: Any
    _labels: dict[str, Any]

    flush: Callable[[sqlite3.Cursor], None]  # the projection's own

    @handles(User.MergedInto)
    def on_merged_into(self, c: sqlite3.Cursor, e: Any) -> None:
        source, dest = merged(e)
        self.flush(c)
        self._rows.discard()
        self._rows.begin(c)
        self._labels.clear()
        c.execute("UPDATE messages SET user_id = ? WHERE user_id = ?", (dest, source))
        # reviewers is "id,id,": the destination once, where both reviewed
        c.execute(
            "UPDATE messages SET reviewers = CASE WHEN instr(reviewers, ?) > 0"
            " THEN replace(reviewers, ?, '') ELSE replace(reviewers, ?, ?) END"
            " WHERE instr(reviewers, ?) > 0",
            (dest + ",", source + ",", source + ",", dest + ",", source + ","),
        )
        for table in ("labels", "message_emojis", "rankings"):
            move_rows(c, table, source, dest)


class StatsMerge:
    """user_hours (summed), user_streaks (the later activity wins), and the per-message
    rows that name a user (stats_messages, stats_label_votes, stats_emojis)."""

    _cursor: sqlite3.Cursor | None
    _messages: dict[str, Any]
    _streaks: dict[str, Any]

    end_batch: Callable[[sqlite3.Cursor], None]  # the projection's own

    @handles(User.MergedInto)
    def on_merged_into(self, c: sqlite3.Cursor, e: Any) -> None:
        source, dest = merged(e)
        self.end_batch(c)  # writes the batch so far; the batch goes on after this event
        self._cursor = c
        self._messages, self._streaks = {}, {}
        names = ", ".join(FIELDS)
        c.execute(
            f"INSERT INTO user_hours (user_id, hour, {names})"
            f" SELECT ?, hour, {names} FROM user_hours WHERE user_id = ? ORDER BY hour"
            f" ON CONFLICT (user_id, hour) DO UPDATE SET"
            f" {', '.join(f'{n} = {n} + excluded.{n}' for n in FIELDS)}",
            (dest, source),
        )
        c.execute("DELETE FROM user_hours WHERE user_id = ?", (source,))
        c.execute(
            "DELETE FROM user_streaks WHERE user_id = ? AND last_activity <="
            " (SELECT last_activity FROM user_streaks WHERE user_id = ?)",
            (source, dest),
        )
        c.execute(
            "DELETE FROM user_streaks WHERE user_id = ? AND EXISTS"
            " (SELECT 1 FROM user_streaks WHERE user_id = ?)",
            (dest, source),
        )
        c.execute("UPDATE user_streaks SET user_id = ? WHERE user_id = ?", (dest, source))
        c.execute("UPDATE stats_messages SET user_id = ? WHERE user_id = ?", (dest, source))
        for table in ("stats_label_votes", "stats_emojis"):
            move_rows(c, table, source, dest)


class TreesMerge:
    """trees.user_id: who wrote the prompt."""

    _trees: Any
    flush: Callable[[sqlite3.Cursor], None]  # the projection's own

    @handles(User.MergedInto)
    def on_merged_into(self, c: sqlite3.Cursor, e: Any) -> None:
        source, dest = merged(e)
        self.flush(c)
        self._trees.discard()
        self._trees.begin(c)
        c.execute("UPDATE trees SET user_id = ? WHERE user_id = ?", (dest, source))


class AgreementMerge:
    """Rankers' agreement with the consensus: the destination's ranking of a parent stays
    where both ranked it."""

    end_batch: Callable[[sqlite3.Cursor], None]  # the projection's own

    @handles(User.MergedInto)
    def on_merged_into(self, c: sqlite3.Cursor, e: Any) -> None:
        source, dest = merged(e)
        self.end_batch(c)  # writes the batch so far; the batch goes on after this event
        for table in ("agreement_rankings", "ranking_agreement"):
            move_rows(c, table, source, dest)


class ArenaMerge:
    """Votes per player and voter: summed."""

    @handles(User.MergedInto)
    def on_merged_into(self, c: sqlite3.Cursor, e: Any) -> None:
        source, dest = merged(e)
        c.execute(
            "INSERT INTO arena_voters SELECT player, ?, votes FROM arena_voters"
            " WHERE user_id = ? ORDER BY player ON CONFLICT (player, user_id)"
            " DO UPDATE SET votes = votes + excluded.votes",
            (dest, source),
        )
        c.execute("DELETE FROM arena_voters WHERE user_id = ?", (source,))


def merged_users(db: Location, position: int) -> dict[UUID, UUID]:
    """Each user merged at or before ``position`` -> the user that holds its rows now (a
    destination merged later into a third user leads there), for readers of the log that
    attribute rows to users (the OA export)."""
    topics = topics_of(User.MergedInto)
    with closing(log_reader.connect(db)) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events"
            " WHERE rowid <= ?"
            f" AND topic IN ({','.join('?' * len(topics))}) ORDER BY rowid",
            (position, *topics),
        ).fetchall()
    mapper = MsgspecMapper(transcoder=JSONTranscoder())
    into: dict[UUID, UUID] = {}
    for originator_id, version, topic, state in rows:
        stored = StoredEvent(
            originator_id=originator_id, originator_version=version, topic=topic, state=state
        )
        e = mapper.to_domain_event(stored)
        into[e.originator_id] = e.destination_user_id
    for source in into:
        seen = {source}
        while into[source] in into and into[source] not in seen:  # no cycle: merged users stay
            seen.add(into[source])
            into[source] = into[into[source]]
    return into
