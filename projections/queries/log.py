"""Queries on the event log for the event loop: the log's head, one aggregate's stored
events. Each takes the log read pool's async ``rows(sql, params)`` (api.storage.reads or
log_reads: SQLite or PostgreSQL, the pool translates the placeholders)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

Rows = Callable[[str, Sequence[Any]], Awaitable[list[tuple]]]


async def head(rows: Rows) -> int:
    """The position of the log's latest event (0: an empty log)."""
    found = await rows("SELECT max(rowid) FROM stored_events", ())
    return (found[0][0] if found else None) or 0


async def stored_events(rows: Rows, originator_id: UUID) -> list[tuple[int, StoredEvent]]:
    """(log position, stored event) for every event of one aggregate, oldest first."""
    found = await rows(
        "SELECT rowid, originator_version, topic, state FROM stored_events"
        " WHERE originator_id = ? ORDER BY originator_version",
        (originator_id.hex,),
    )
    return [
        (
            r[0],
            StoredEvent(
                originator_id=originator_id, originator_version=r[1], topic=r[2], state=r[3]
            ),
        )
        for r in found
    ]
