"""The event log of a test's data folder, read and damaged on either store.

Tests that inspect the stored rows, or damage them the way an intruder (or a bad disk)
would, write plain SQL against the SQLite names (``stored_events``, its ``rowid``, ``?``
parameters); on a PostgreSQL store (``DATAENGINE_STORE``, set per test by the PostgreSQL
pass) the same statement runs on the store's table through ``api.storage.logdb``'s
translation. Reads go through the product's own ``connect_log``; writes need a writable
connection, which the product never opens on the log outside the application.

``where`` is a data folder (its log is ``log_location(folder)``: the configured store, or
its events.sqlite), an events.sqlite path, or a ``postgresql://`` URL.
"""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from os import PathLike
from pathlib import Path
from typing import Any

from api.storage.events import EVENTS_FILE
from api.storage.logdb import Location, connect_log, log_location, log_translator, store_url
from api.storage.pg_url import is_postgres, split_url

Where = str | PathLike[str]
ROW = "rowid, originator_id, originator_version, topic, state"


def location(where: Where) -> Location:
    """The log a data folder (or a file, or a URL) names."""
    if is_postgres(where):
        return str(where)
    path = Path(where)
    if path.suffix == ".sqlite":
        return path
    return log_location(path)


def on_postgres(where: Where) -> bool:
    return is_postgres(location(where))


def read(where: Where, sql: str, params: tuple | list = ()) -> list[tuple]:
    """Rows of a query on the log, through the product's read-only connection."""
    conn = connect_log(location(where))
    assert conn is not None, f"no log at {where}"
    try:
        return list(conn.execute(sql, tuple(params)).fetchall())
    finally:
        conn.close()


def write(where: Where, sql: str, params: tuple | list = ()) -> int:
    """Run one changing statement on the log (committed); the number of rows it changed."""
    loc = location(where)
    if is_postgres(loc):
        import psycopg

        libpq, schema = split_url(str(loc))
        with psycopg.connect(libpq, autocommit=True) as conn:
            return conn.execute(log_translator(schema)(sql), tuple(params)).rowcount
    conn = sqlite3.connect(loc, timeout=30)
    try:
        with conn:
            return conn.execute(sql, tuple(params)).rowcount
    finally:
        conn.close()


def rows(where: Where) -> list[tuple]:
    """Every row of the log: (position, originator_id, version, topic, state), in order."""
    return read(where, f"SELECT {ROW} FROM stored_events ORDER BY rowid")


def head(where: Where) -> int:
    """The last position (0: an empty log)."""
    return int(read(where, "SELECT coalesce(max(rowid), 0) FROM stored_events")[0][0])


def position_of(where: Where, originator_id: Any, version: int) -> int:
    """The position of an aggregate's event (the id as a UUID or its hex)."""
    oid = originator_id if isinstance(originator_id, str) else originator_id.hex
    found = read(
        where,
        "SELECT rowid FROM stored_events WHERE originator_id=? AND originator_version=?",
        (oid, version),
    )
    assert found, f"no event {oid} v{version} in the log"
    return int(found[0][0])


def state_at(where: Where, position: int) -> bytes:
    return bytes(read(where, "SELECT state FROM stored_events WHERE rowid=?", (position,))[0][0])


def set_state(where: Where, position: int, state: bytes) -> None:
    assert write(where, "UPDATE stored_events SET state=? WHERE rowid=?", (state, position)) == 1


def set_topic(where: Where, position: int, topic: str) -> None:
    assert write(where, "UPDATE stored_events SET topic=? WHERE rowid=?", (topic, position)) == 1


def flip_byte(where: Where, position: int, offset: int = 10) -> None:
    """Flip the lowest bit of one byte of a stored event's state (twice: as before)."""
    state = bytearray(state_at(where, position))
    state[offset] ^= 0x01
    set_state(where, position, bytes(state))


def delete_row(where: Where, position: int) -> None:
    assert write(where, "DELETE FROM stored_events WHERE rowid=?", (position,)) == 1


def move_row(where: Where, position: int, to: int) -> None:
    """Give a row another position (the one it leaves is then missing)."""
    assert write(where, "UPDATE stored_events SET rowid=? WHERE rowid=?", (to, position)) == 1


def empty_store_url() -> str | None:
    """Under a PostgreSQL store: a URL of the same server naming a schema nothing has written
    (where a data folder's "no event store" is found); None on SQLite."""
    url = store_url()
    if url is None:
        return None
    libpq, schema = split_url(url)
    return f"{libpq}{'&' if '?' in libpq else '?'}schema={schema}_empty"


FIXTURE_LOGS = Path(__file__).parent / "fixtures" / "logs"


def old_log(name: str, folder: Path) -> Path:
    """A data folder whose log is the fixture log ``name`` (tests/fixtures/logs/NAME.sqlite.gz,
    written by older code): its events.sqlite, or, under a PostgreSQL store, that file copied
    into the store with `dataengine store copy` (what a user moving such a log would do); the
    copy's SQLite source then lies beside the folder, not in it."""
    from api.cli import main

    folder.mkdir(parents=True)
    url = store_url()
    source = folder if url is None else folder.with_name(f"{folder.name}-sqlite")
    source.mkdir(exist_ok=True)
    with (
        gzip.open(FIXTURE_LOGS / f"{name}.sqlite.gz") as src,
        open(source / EVENTS_FILE, "wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    if url is not None:
        assert main(["store", "copy", "--from", str(source), "--to", url]) == 0
    return folder
