"""Sources of the notification log a projection follows.

``StoreLog`` reads the event store's table directly (one indexed range scan per batch,
rows decoded only when a projection handles their topic), on SQLite or PostgreSQL
(api.storage.logdb: the same SQL, rows and positions on both); ``AppLog`` goes through the
application's recorder, so it also follows the in-memory store used in unit tests.
Both hand out raw rows: (position, originator_id, originator_version, topic, state).

Rows decode two ways: ``decode`` gives the domain event (what any projection may ask
for); ``view_decoder`` gives a msgspec struct decoded straight from the stored JSON, with
the event's attribute names but ids left as canonical UUID text. A view skips building
UUID objects, the intermediate dict and the dataclass, which is most of the cost of a
replay; a projection may narrow a view further (fields it does not declare are skipped
by the JSON parser, never built).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import msgspec
from eventsourcing.persistence import JSONTranscoder, StoredEvent

from api.storage.codec import MsgspecMapper
from api.storage.logdb import Location, connect_log
from api.storage.pg_url import is_postgres

Row = tuple[int, Any, int, str, bytes]
_ORIGINATOR = ("originator_id", "originator_version")


class LogSource(Protocol):
    def read(self, after: int, limit: int) -> Sequence[Row]: ...

    def head(self) -> int: ...

    def decode(self, row: Row) -> Any: ...


def _textual(tp: Any) -> Any:
    """The annotation with every UUID replaced by str (recursively)."""
    if tp is UUID:
        return str
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None or not args or origin is typing.Literal:
        return tp
    new = tuple(_textual(a) for a in args)
    if new == args:
        return tp
    if origin in (types.UnionType, typing.Union):
        return typing.Union[new]  # noqa: UP007 (rebuilds a Union from a tuple of members)
    return origin[new]


def event_view(event_class: type) -> type[msgspec.Struct]:
    """A struct with the event's fields (ids as text) that the stored JSON decodes into."""
    hints = typing.get_type_hints(event_class)
    fields: list[Any] = [("originator_id", str, ""), ("originator_version", int, 0)]
    for f in dataclasses.fields(event_class):
        if f.name in _ORIGINATOR:
            continue
        tp = _textual(hints[f.name])
        if f.default is not dataclasses.MISSING:
            fields.append((f.name, tp, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, tp, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, tp))
    return msgspec.defstruct(f"{event_class.__name__}View", fields, kw_only=True)


_KNOWN_IDS: dict[Any, str] = {}


def text_id(value: Any) -> str:
    """An originator id as canonical UUID text (the SQLite store keeps 32 hex digits).

    Memoised: one aggregate has many events, and there are far fewer aggregates than events.
    """
    text = _KNOWN_IDS.get(value)
    if text is None:
        if isinstance(value, str) and len(value) == 32:
            text = f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
        else:
            text = str(value)
        if len(_KNOWN_IDS) > 1_000_000:
            _KNOWN_IDS.clear()
        _KNOWN_IDS[value] = text
    return text


def views_through(decode: Callable[[Row], Any], view: type) -> Callable[[Row], Any]:
    """Views made from domain events: whatever the mapper does (decryption, decompression,
    upcasting, another encoding) happens in ``decode``, and the view is re-read from its
    result. For logs that only hand out domain events, and stores the fast path cannot read."""
    encode = msgspec.json.Encoder().encode
    decode_view: Callable[[bytes], Any] = msgspec.json.Decoder(view).decode

    def decoder(row: Row) -> Any:
        return decode_view(encode(vars(decode(row))))

    return decoder


class _Decoder:
    mapper: Any

    def decode(self, row: Row) -> Any:
        _, originator_id, version, topic, state = row
        return self.mapper.to_domain_event(
            StoredEvent(
                originator_id=originator_id, originator_version=version, topic=topic, state=state
            )
        )

    def view_decoder(self, event_class: type, view: type | None = None) -> Callable[[Row], Any]:
        """row -> a view of the event (``event_view(event_class)`` unless given)."""
        view = view or event_view(event_class)
        mapper = self.mapper
        if (
            type(mapper) is not MsgspecMapper
            or mapper.cipher
            or mapper.compressor
            or getattr(event_class, "class_version", 1) > 1
        ):
            return views_through(self.decode, view)
        decode: Callable[[bytes], Any] = msgspec.json.Decoder(view).decode
        known = _KNOWN_IDS

        def decoder(row: Row) -> Any:
            event = decode(row[4])
            event.originator_id = known.get(row[1]) or text_id(row[1])
            event.originator_version = row[2]
            return event

        return decoder


def max_position(conn: Any) -> int:
    """The last log position on a ``connect_log`` connection (0 before the first write)."""
    if conn is None:
        return 0
    try:
        return conn.execute("SELECT max(rowid) FROM stored_events").fetchone()[0] or 0
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return 0
        raise


class StoreLog(_Decoder):
    """The events table of a log location (an events.sqlite file or a PostgreSQL URL),
    read-only.

    ``topics``: hand out only events of these topics, and ``stop``: none after that
    position (a rebuild's worker skips, in SQL, the rows none of its projections
    handles; their state is never read).
    """

    def __init__(
        self, path: Location, *, topics: Sequence[str] | None = None, stop: int | None = None
    ):
        self.path: Location = path if is_postgres(path) else Path(path)
        self.mapper = MsgspecMapper(transcoder=JSONTranscoder())
        self._conn: Any = None
        self._query = (
            "SELECT rowid, originator_id, originator_version, topic, state"
            " FROM stored_events WHERE rowid > ?"
        )
        self._params: tuple[Any, ...] = ()
        if stop is not None:
            self._query += " AND rowid <= ?"
            self._params += (stop,)
        if topics is not None:
            self._query += f" AND topic IN ({', '.join('?' * len(topics))})"
            self._params += tuple(sorted(topics))
        self._query += " ORDER BY rowid LIMIT ?"

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = connect_log(self.path)
        return self._conn

    def read(self, after: int, limit: int) -> Sequence[Row]:
        conn = self._connection()
        if conn is None:
            return []
        try:
            return conn.execute(self._query, (after, *self._params, limit)).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []  # the application has not written anything yet
            raise

    def head(self) -> int:
        return max_position(self._connection())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


SQLiteLog = StoreLog  # the name existing callers use; it reads PostgreSQL stores too


class AppLog(_Decoder):
    """The log of a running DataEngine, through its recorder (any persistence module)."""

    def __init__(self, app: Any):
        self.app = app
        self.mapper = app.mapper

    def read(self, after: int, limit: int) -> Sequence[Row]:
        notifications = self.app.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )
        return [
            (n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in notifications
        ]

    def head(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def close(self) -> None:
        pass
