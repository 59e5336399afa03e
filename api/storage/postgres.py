"""The event log on PostgreSQL: eventsourcing's PostgreSQL persistence (psycopg 3 and its
connection pool), with the same rows and positions as the SQLite store.

* Rows are the SQLite store's values: the originator id as 32 hex digits (a text column,
  collated "C" so it sorts byte-wise as in SQLite), version, topic, state. A log copied
  from one store to the other therefore hashes to the same audit digest.
* Positions are the notification ids, and they are gapless, like SQLite rowids: a batch
  takes ``max(notification_id) + 1 ..`` under the table's EXCLUSIVE lock (which the stock
  recorder takes too, so ids commit in order), instead of the bigserial sequence, which
  skips the values of every rolled-back insert (each version conflict). A hole in the
  positions then still means a deleted row, as the audit assumes.
* Group commit as on SQLite (api.storage.group_commit): one transaction per batch; when
  it fails (a version conflict, a value that cannot be stored), each request is retried
  alone under a savepoint, so the failure fails only its own request and the others still
  share one commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier

from api.storage.group_commit import GroupCommit, Pending
from api.storage.pg_url import EVENTS_TABLE


def _uuid(originator_id: Any) -> Any:
    return UUID(originator_id) if isinstance(originator_id, str) else originator_id


def _convert(error: psycopg.Error) -> PersistenceError:
    kind: type[PersistenceError] = PersistenceError
    if isinstance(error, psycopg.IntegrityError):
        kind = IntegrityError
    elif isinstance(error, psycopg.OperationalError):
        kind = OperationalError
    elif isinstance(error, psycopg.InterfaceError):
        kind = InterfaceError
    converted = kind(str(error))
    converted.__cause__ = error
    return converted


def _batch_wide(conn: Any, error: psycopg.Error) -> bool:
    """An error of the connection or the server, not of one request's rows."""
    return conn.broken or isinstance(error, psycopg.OperationalError)


class GroupCommitPostgresRecorder(GroupCommit, PostgresApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.events_table_name != EVENTS_TABLE:  # where the log's readers look for it
            raise ProgrammingError(
                f"the log's table is {EVENTS_TABLE}, not {self.events_table_name}"
            )
        self._init_group_commit()
        table = Identifier(self.datastore.schema), Identifier(self.events_table_name)
        # The schema, our table and its position index; no composite type (the insert
        # passes arrays) and no insert function (it would draw ids from a sequence).
        self.sql_create_statements = [
            SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(table[0]),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.{1} ("
                'originator_id text COLLATE "C" NOT NULL, '
                "originator_version bigint NOT NULL, "
                "topic text, "
                "state bytea, "
                "notification_id bigint NOT NULL, "
                "PRIMARY KEY (originator_id, originator_version))"
            ).format(*table),
            SQL("CREATE UNIQUE INDEX IF NOT EXISTS {0} ON {1}.{2} (notification_id)").format(
                Identifier(self.notification_id_index_name), *table
            ),
        ]
        self.datastore.db_type_names.discard(self.stored_event_type_name)
        self._insert = SQL(
            "INSERT INTO {0}.{1} (originator_id, originator_version, topic, state, notification_id)"
            " SELECT e.o, e.v, e.t, e.s, m.top + e.n"
            " FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::bytea[])"
            " WITH ORDINALITY AS e(o, v, t, s, n),"
            " (SELECT coalesce(max(notification_id), 0) AS top FROM {0}.{1}) AS m"
            " RETURNING notification_id"
        ).format(*table)

    # ------------------------------------------------------------------ writes
    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        # A lost connection is retried: if the commit did land, the retry conflicts on
        # the versions it wrote, and the command's own retry finds its earlier result.
        return GroupCommit.insert_events(self, stored_events, **kwargs)

    def _commit(self, batch: list[Pending]) -> None:
        try:
            with self.datastore.get_connection() as conn:
                try:
                    with conn.transaction(), conn.cursor() as cursor:
                        self._lock_table(cursor)
                        self._notify_channel(cursor)
                        ids = self._write(cursor, [row for item in batch for row in item.rows])
                    self._hand_out(batch, ids)
                except psycopg.Error as e:
                    # a conflict, or a value the server or the driver refuses: each request
                    # on its own (as on SQLite); the server's own trouble (a lost
                    # connection, a full disk) is no request's and fails the whole batch
                    if len(batch) == 1 or _batch_wide(conn, e):
                        raise
                    self._one_by_one(conn, batch)
        except psycopg.Error as e:
            error = _convert(e)
            for item in batch:
                if item.ids is None and item.error is None:
                    item.error = error
        except BaseException as e:  # noqa: BLE001 - handed to every request not stored
            for item in batch:
                if item.ids is None and item.error is None:
                    item.error = e

    def _one_by_one(self, conn: Any, batch: list[Pending]) -> None:
        """Each request alone (a savepoint each), all in one transaction and one commit."""
        stored: list[tuple[Pending, list[int]]] = []
        failed: list[tuple[Pending, BaseException]] = []
        with conn.transaction(), conn.cursor() as cursor:
            self._lock_table(cursor)
            self._notify_channel(cursor)
            for item in batch:
                try:
                    with conn.transaction():
                        stored.append((item, self._write(cursor, item.rows)))
                except psycopg.Error as e:
                    if _batch_wide(conn, e):
                        raise
                    failed.append((item, _convert(e)))
        # only once committed do the requests learn their positions
        for item, ids in stored:
            item.ids = ids
        for item, error in failed:
            item.error = error

    def _write(self, cursor: Any, rows: list[Any]) -> list[int]:
        columns = list(zip(*rows))
        cursor.execute(self._insert, [list(c) for c in columns])
        return sorted(r["notification_id"] for r in cursor.fetchall())

    @staticmethod
    def _hand_out(batch: list[Pending], ids: list[int]) -> None:
        for item in batch:
            item.ids, ids = ids[: len(item.rows)], ids[len(item.rows) :]

    # ------------------------------------------------------------------ reads
    def select_events(self, originator_id: UUID | str, **kwargs: Any) -> Sequence[StoredEvent]:
        key = originator_id.hex if isinstance(originator_id, UUID) else originator_id
        return [
            replace(e, originator_id=_uuid(e.originator_id))
            for e in super().select_events(key, **kwargs)
        ]

    def select_notifications(self, *args: Any, **kwargs: Any) -> Sequence[Notification]:
        return [
            replace(n, originator_id=_uuid(n.originator_id))
            for n in super().select_notifications(*args, **kwargs)
        ]
