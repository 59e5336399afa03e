"""Sources of the notification log a projection follows.

``SQLiteLog`` reads the event store's table directly (one indexed range scan per batch,
rows decoded only when a projection handles their topic); ``AppLog`` goes through the
application's recorder, so it also follows the in-memory store used in unit tests.
Both hand out raw rows: (position, originator_id, originator_version, topic, state).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Protocol, Sequence

from eventsourcing.persistence import JSONTranscoder, StoredEvent

from domain.codec import MsgspecMapper

Row = tuple[int, Any, int, str, bytes]


class LogSource(Protocol):
    def read(self, after: int, limit: int) -> Sequence[Row]: ...

    def head(self) -> int: ...

    def decode(self, row: Row) -> Any: ...


class _Decoder:
    mapper: Any

    def decode(self, row: Row) -> Any:
        _, originator_id, version, topic, state = row
        return self.mapper.to_domain_event(StoredEvent(
            originator_id=originator_id, originator_version=version, topic=topic, state=state))


class SQLiteLog(_Decoder):
    """The `stored_events` table of an events.sqlite file, read-only."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.mapper = MsgspecMapper(transcoder=JSONTranscoder())
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection | None:
        if self._conn is None:
            if not self.path.exists():
                return None
            # A read-only connection never takes the writer's lock; WAL lets it read
            # while the application commits.
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                         check_same_thread=False)
        return self._conn

    def read(self, after: int, limit: int) -> Sequence[Row]:
        conn = self._connection()
        if conn is None:
            return []
        try:
            return conn.execute(
                "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
                "WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, limit)).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []  # the application has not written anything yet
            raise

    def head(self) -> int:
        conn = self._connection()
        if conn is None:
            return 0
        try:
            return conn.execute("SELECT max(rowid) FROM stored_events").fetchone()[0] or 0
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return 0
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class AppLog(_Decoder):
    """The log of a running DataEngine, through its recorder (any persistence module)."""

    def __init__(self, app: Any):
        self.app = app
        self.mapper = app.mapper

    def read(self, after: int, limit: int) -> Sequence[Row]:
        notifications = self.app.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False)
        return [(n.id, n.originator_id, n.originator_version, n.topic, n.state)
                for n in notifications]

    def head(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def close(self) -> None:
        pass
