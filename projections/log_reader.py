"""Conversation trees as they stood at a log position, read straight from the event log.

Exports and dataset builds pin a log position P and replay only events with position <= P,
so a rebuild at P sees the same trees whatever was appended later. The scan walks the
primary-key index (tree id, version), which yields each tree's events together: one
tree is finished before the next begins, so memory stays at one tree however big the
log, and trees come out in tree-id order, which makes outputs deterministic.

The log is an events.sqlite file or a PostgreSQL store (api.storage.logdb): ``events_db``
gives its location, and every function here reads either with the same results.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from eventsourcing.persistence import JSONTranscoder, StoredEvent

from api.storage.codec import MsgspecMapper
from api.storage.events import EVENTS_FILE
from api.storage.logdb import Location, connect_log, describe, log_exists, log_location
from domain.model.catalogue import topics_of
from domain.model.errors import DomainError, ErrorCode
from domain.model.tree import ConversationTree

# A tree's events are stored under its stored topic; a log may also hold the classes'
# current module path (domain.model.catalogue.topics_of): both are read.
_TREE_PATTERNS = tuple(topic + ".%" for topic in topics_of(ConversationTree))
_STARTED = topics_of(ConversationTree.TreeStarted)


class LogPositionError(DomainError):
    """A requested position lies beyond the end of the log (or the log is missing)."""

    error_code = ErrorCode.VALIDATION_ERROR
    http_status = 422


__all__ = ["EVENTS_FILE", "events_db", "connect", "log_position", "iter_trees"]


def events_db(folder: str | Path) -> Location:
    """The location of the folder's log (its events.sqlite, or the configured store)."""
    location = log_location(folder)
    if not log_exists(location):
        raise LogPositionError(f"no event log at {describe(location)}")
    return location


def connect(db: Location) -> Any:
    """A read-only connection to the log at ``db`` (sqlite3's, or its PostgreSQL twin)."""
    conn = connect_log(db)
    if conn is None:
        raise LogPositionError(f"no event log at {describe(db)}")
    return conn


_connect = connect


def log_position(db: Location) -> int:
    """The position of the last event written (0 for an empty log)."""
    with closing(_connect(db)) as conn:
        return conn.execute("SELECT coalesce(max(rowid), 0) FROM stored_events").fetchone()[0]


def resolve_position(db: Location, as_of: int | None) -> int:
    end = log_position(db)
    if as_of is None:
        return end
    if as_of < 0 or as_of > end:
        raise LogPositionError(f"log position {as_of} is outside the log (0..{end})")
    return as_of


def count_trees(db: Location, position: int) -> int:
    """Trees started at or before the position (for progress bars)."""
    with closing(_connect(db)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM stored_events WHERE rowid <= ?"
            f" AND topic IN ({','.join('?' * len(_STARTED))})",
            (position, *_STARTED),
        ).fetchone()
    return row[0]


def iter_trees(db: Location, position: int) -> Iterator[ConversationTree]:
    """Every tree as of the position, replayed from its events, in tree-id order."""
    mapper = MsgspecMapper(transcoder=JSONTranscoder())
    conn = _connect(db)
    try:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events "
            f"WHERE rowid <= ? AND ({' OR '.join(['topic LIKE ?'] * len(_TREE_PATTERNS))}) "
            "ORDER BY originator_id, originator_version",
            (position, *_TREE_PATTERNS),
        )
        tree: ConversationTree | None = None
        for originator_id, version, topic, state in rows:
            event = mapper.to_domain_event(
                StoredEvent(
                    originator_id=originator_id,
                    originator_version=version,
                    topic=topic,
                    state=state,
                )
            )
            if version == 1:
                if tree is not None:
                    yield tree
                tree = event.mutate(None)
            else:
                tree = event.mutate(tree)
        if tree is not None:
            yield tree
    finally:
        conn.close()
