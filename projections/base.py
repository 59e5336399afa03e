"""What a projection is: SQL tables plus one handler per event type.

A handler gets the batch's cursor and the decoded event and writes rows; it must depend
on nothing but the event and the rows already written (no clock, no config), so a
rebuild from the log produces the same tables as live following did.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, overload
from uuid import UUID

from domain.model.catalogue import topics_of

Handler = Callable[[sqlite3.Cursor, Any], None]


def handles(*event_classes: type) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a method as the handler of these event classes."""

    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        fn._handles = event_classes  # type: ignore[attr-defined]
        return fn

    return mark


class Projection:
    """A read model. Subclasses set ``name``, ``ddl`` and ``tables`` and mark handlers with
    ``@handles``; everything else below is an optional hook with a default that does nothing,
    overridden by the projections that need it (projections.runner calls them)."""

    name: ClassVar[str]
    # CREATE statements (tables first, then indexes); tables lists what a rebuild drops.
    ddl: ClassVar[tuple[str, ...]] = ()
    tables: ClassVar[tuple[str, ...]] = ()
    # A change of meaning that leaves the DDL as it was: bump it and the read model is
    # projected again (projections.store.schema_digest hashes it with the DDL).
    schema_version: ClassVar[str | int] = ""
    # Roughly how much work a replay of the log is for this projection, relative to the
    # others (1: a few rows per tree); a parallel rebuild balances its workers by it.
    replay_cost: ClassVar[float] = 1.0
    # Handlers take log views (projections.log) instead of domain events: True for the
    # full view of each event, or event class -> a narrower msgspec struct.
    views: ClassVar[bool | Mapping[type, type]] = False
    # With views whose structs declare ``position``: each view gets its log position.
    positions: ClassVar[bool] = False
    # Handlers read other projections' rows: buffered projections flush before each.
    reads_others: ClassVar[bool] = False
    # The indexes handlers query during a replay (None: all); a rebuild creates the
    # others once the tables are full.
    replay_indexes: ClassVar[tuple[str, ...] | None] = None

    def handlers(self) -> dict[str, Handler]:
        """Event topic -> bound handler. Topics (not classes) so undecoded rows can be skipped;
        each event's stored and current topic (domain.model.catalogue.topics_of)."""
        found: dict[str, Handler] = {}
        for klass in reversed(type(self).__mro__):
            for attr, fn in vars(klass).items():
                for topic in topics_of(*getattr(fn, "_handles", ())):
                    found[topic] = getattr(self, attr)
        return found

    # ------------------------------------------------------------------ runner hooks
    def bind_log(self, log: Any) -> None:
        """The log source the runner follows (projections.log.LogSource), for a projection
        that reads events itself at a batch's end."""

    def begin_batch(self, cursor: sqlite3.Cursor) -> None:
        """Before a batch's first event, in projection order."""

    def end_batch(self, cursor: sqlite3.Cursor) -> None:
        """After a batch's last event, before the batch commits: write what was buffered."""

    def flush(self, cursor: sqlite3.Cursor) -> None:
        """Write what was buffered so far (before a handler that reads others' rows)."""

    def abort_batch(self) -> None:
        """The batch rolled back (or another runner wrote the file): drop buffered changes."""

    def overrides(self, hook: str) -> bool:
        """Whether the projection has its own ``hook`` (the runner skips the defaults)."""
        return getattr(type(self), hook) is not getattr(Projection, hook)


@overload
def uid(value: None) -> None: ...
@overload
def uid(value: UUID | str) -> str: ...
def uid(value: UUID | str | None) -> str | None:
    """Ids are stored as canonical UUID text (or NULL)."""
    return None if value is None else str(value)


@overload
def ts(value: None) -> None: ...
@overload
def ts(value: datetime) -> float: ...
def ts(value: datetime | None) -> float | None:
    """Times are stored as POSIX seconds: they compare and sort as numbers."""
    return None if value is None else value.timestamp()


def dumps(value: Any) -> str:
    """JSON with a fixed key order, so equal contents are equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
