"""Conversation trees as they stood at a log position, read straight from the event log.

Exports and dataset builds pin a log position P and replay only events with rowid <= P,
so a rebuild at P sees the same trees whatever was appended later. The scan walks the
primary-key index (tree id, version), which yields each tree's events together: one
tree is finished before the next begins, so memory stays at one tree however big the
log, and trees come out in tree-id order, which makes outputs deterministic.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from eventsourcing.persistence import JSONTranscoder, StoredEvent

from api.storage.codec import MsgspecMapper
from api.storage.events import EVENTS_FILE
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


def events_db(folder: str | Path) -> Path:
    path = Path(folder) / EVENTS_FILE
    if not path.exists():
        raise LogPositionError(f"no event log at {path}")
    return path


def _connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def log_position(db: Path) -> int:
    """The position of the last event written (0 for an empty log)."""
    with _connect(db) as conn:
        return conn.execute("SELECT coalesce(max(rowid), 0) FROM stored_events").fetchone()[0]


def resolve_position(db: Path, as_of: int | None) -> int:
    end = log_position(db)
    if as_of is None:
        return end
    if as_of < 0 or as_of > end:
        raise LogPositionError(f"log position {as_of} is outside the log (0..{end})")
    return as_of


def count_trees(db: Path, position: int) -> int:
    """Trees started at or before the position (for progress bars)."""
    with _connect(db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM stored_events WHERE rowid <= ?"
            f" AND topic IN ({','.join('?' * len(_STARTED))})",
            (position, *_STARTED),
        ).fetchone()
    return row[0]


def iter_trees(db: Path, position: int) -> Iterator[ConversationTree]:
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
