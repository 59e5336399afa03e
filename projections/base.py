"""What a projection is: SQL tables plus one handler per event type.

A handler gets the batch's cursor and the decoded event and writes rows; it must depend
on nothing but the event and the rows already written (no clock, no config), so a
rebuild from the log produces the same tables as live following did.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any, ClassVar

from eventsourcing.utils import get_topic

Handler = Callable[[sqlite3.Cursor, Any], None]


def handles(*event_classes: type) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a method as the handler of these event classes."""

    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        fn._handles = event_classes  # type: ignore[attr-defined]
        return fn

    return mark


class Projection:
    name: ClassVar[str]
    # CREATE statements (tables first, then indexes); tables lists what a rebuild drops.
    ddl: ClassVar[tuple[str, ...]] = ()
    tables: ClassVar[tuple[str, ...]] = ()
    # Roughly how much work a replay of the log is for this projection, relative to the
    # others (1: a few rows per tree); a parallel rebuild balances its workers by it.
    replay_cost: ClassVar[float] = 1.0

    def handlers(self) -> dict[str, Handler]:
        """Event topic -> bound handler. Topics (not classes) so undecoded rows can be skipped."""
        found: dict[str, Handler] = {}
        for klass in reversed(type(self).__mro__):
            for attr, fn in vars(klass).items():
                for event_class in getattr(fn, "_handles", ()):
                    found[get_topic(event_class)] = getattr(self, attr)
        return found


def uid(value: Any) -> str | None:
    """Ids are stored as canonical UUID text (or NULL)."""
    return None if value is None else str(value)


def ts(value: Any) -> float | None:
    """Times are stored as POSIX seconds: they compare and sort as numbers."""
    return None if value is None else value.timestamp()


def dumps(value: Any) -> str:
    """JSON with a fixed key order, so equal contents are equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
