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
from eventsourcing.utils import get_topic

from api.storage.codec import MsgspecMapper
from api.storage.events import EVENTS_FILE
from domain.model.errors import DomainError, ErrorCode
from domain.model.tree import ConversationTree

_TREE_TOPICS = get_topic(ConversationTree) + ".%"
_SIDE_TOPICS = tuple(
    get_topic(cls)
    for cls in (
        ConversationTree.EmojiToggled,
        ConversationTree.LabelsSubmitted,
        ConversationTree.RankingSubmitted,
        ConversationTree.ScoringFailed,
    )
)


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
            "SELECT count(*) FROM stored_events WHERE rowid <= ? AND topic = ?",
            (position, get_topic(ConversationTree.TreeStarted)),
        ).fetchone()
    return row[0]


def iter_trees(
    db: Path, position: int, *, content_only: bool = False
) -> Iterator[ConversationTree]:
    """Every tree as of the position, replayed from its events, in tree-id order.

    content_only: skip the events that only feed emoji counts, labels, individual
    rankings and ranking counts (a dataset needs none of them; in a live store they
    are most of the log). Such trees are partial read-only views: their version counts
    only the events applied.
    """
    mapper = MsgspecMapper(transcoder=JSONTranscoder())
    skipped = _SIDE_TOPICS if content_only else ()
    conn = _connect(db)
    try:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events "
            f"WHERE rowid <= ? AND topic LIKE ? AND topic NOT IN ({','.join('?' * len(skipped))}) "
            "ORDER BY originator_id, originator_version",
            (position, _TREE_TOPICS, *skipped),
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
            elif content_only:
                # Versions have gaps here, which mutate() would refuse.
                event.apply(tree)
            else:
                tree = event.mutate(tree)
        if tree is not None:
            yield tree
    finally:
        conn.close()
