"""Copy an event log into an empty PostgreSQL store, position for position.

Rows go over unchanged (id text, version, topic, state bytes) with their positions as
the notification ids, by COPY in batches, under the table's EXCLUSIVE lock and in one
transaction: a failed copy leaves the store empty, and no writer can interleave. The
caller checks the result (``dataengine store copy`` compares the audit digests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from api.storage.logdb import Location, connect_log, describe
from api.storage.pg_url import EVENTS_TABLE, postgres_env, split_url

BATCH = 20_000


class CopyError(Exception):
    """The copy cannot start (no source, a destination that already holds events)."""


def create_store(url: str) -> None:
    """The destination's schema and table, as the application would create them."""
    from eventsourcing.persistence import InfrastructureFactory
    from eventsourcing.utils import Environment

    factory = InfrastructureFactory.construct(Environment("dataengine", postgres_env(url)))
    try:
        factory.application_recorder()  # CREATE SCHEMA / TABLE / INDEX IF NOT EXISTS
    finally:
        factory.close()


def source_rows(source: Location) -> tuple[int, Iterator[list[tuple]]]:
    """(the source's head, batches of rows in position order)."""
    conn = connect_log(source)
    if conn is None:
        raise CopyError(f"no event log at {describe(source)}")
    head = conn.execute("SELECT coalesce(max(rowid), 0) FROM stored_events").fetchone()[0]

    def batches() -> Iterator[list[tuple]]:
        try:
            cursor = conn.execute(
                "SELECT rowid, originator_id, originator_version, topic, state"
                " FROM stored_events ORDER BY rowid"
            )
            while rows := cursor.fetchmany(BATCH):
                yield rows
        finally:
            conn.close()

    return head, batches()


def copy_log(
    source: Location, url: str, progress: Callable[[int], Any] | None = None
) -> tuple[int, int]:
    """Copy every row of ``source`` into the store at ``url``; (rows, head position)."""
    import psycopg

    head, batches = source_rows(source)
    create_store(url)
    libpq, schema = split_url(url)
    table = f'"{schema}"."{EVENTS_TABLE}"'
    copied = 0
    with psycopg.connect(libpq) as conn:  # one transaction: all or nothing
        conn.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        found = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        if found and found[0]:
            raise CopyError(
                f"{describe(url)} already holds {found[0]} events; copy into an empty store"
            )
        columns = "notification_id, originator_id, originator_version, topic, state"
        with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for rows in batches:
                for row in rows:
                    copy.write_row(row)
                copied += len(rows)
                if progress:
                    progress(len(rows))
    return copied, head
