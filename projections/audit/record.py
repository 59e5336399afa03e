"""The hash-chain follower of the log, and the record that makes its checks incremental.

``<data>/audit.sqlite`` keeps what an auditor needs to name damage, not just detect it:

* ``checkpoints(position, digest)``: the chain link (``projections.audit.chain``) every
  ``CHECKPOINT_EVERY`` positions, at the end of every batch recorded (so at the head
  whenever a digest is taken), and at any position a digest was asked for (manifests);
* ``events(position, originator_id, version, topic_id, fingerprint)``: per event, the
  sha256 of its canonical bytes and who it belonged to, so a changed byte names its event
  and a deleted row is still named by aggregate id and version.

``record`` extends the record from its last checkpoint (only new events are hashed);
``projections.audit.verify`` checks the log against it. Positions are the store's
notification ids (SQLite rowids; on PostgreSQL, api.storage.postgres assigns them gapless
too), which the store never skips: a hole is a deleted row. The log is read through
api.storage.logdb, so a PostgreSQL log gives the same rows, and the same digests, as its
SQLite copy.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api.storage.logdb import Location, connect_log
from projections.audit.chain import (
    GENESIS,
    SCHEME,
    Text,
    canonical,
    chain_with_fingerprints,
    fingerprint,
    next_link,
)
from projections.log import max_position

AUDIT_FILE = "audit.sqlite"
CHECKPOINT_EVERY = 1000
FETCH = 20_000  # rows per fetchmany: big enough that the Python loop dominates

Progress = Callable[[int], None]  # called with the number of rows just processed
_INF = (1 << 63) - 1  # the largest rowid
_record_lock = threading.Lock()


class ChainBroken(Exception):
    """The log no longer matches what the record says; `audit verify` names the damage."""


def as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# ---------------------------------------------------------------------------- the log
def open_log(path: Location) -> Any:
    """A read-only connection to the log: an events.sqlite file or a PostgreSQL URL
    (None when there is no SQLite store yet)."""
    return connect_log(path)


def scan(log: Any, after: int, upto: int | None = None) -> Iterator[list[tuple]]:
    """Batches of (position, originator_id, version, topic, state) in position order.

    TEXT arrives as str; should a TEXT value not be UTF-8 (a damaged row), the connection
    switches to raw ``Text`` bytes and the scan goes on from the last batch handed out.
    """
    if log is None:
        return
    while True:
        try:
            cursor = log.execute(
                "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
                "WHERE rowid > ? AND rowid <= ? ORDER BY rowid",
                (after, _INF if upto is None else upto),
            )
            while rows := cursor.fetchmany(FETCH):
                yield rows
                after = rows[-1][0]
            return
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return  # nothing written yet
            if "decode" not in str(e) or log.text_factory is Text:
                raise
            log.text_factory = Text


def log_head(log: Any) -> int:
    return max_position(log)


def log_row(log: Any, position: int) -> tuple | None:
    for rows in scan(log, position - 1, position):
        return rows[0]
    return None


# ---------------------------------------------------------------------------- the record
class AuditStore:
    """``<data>/audit.sqlite``: checkpoints and per-event fingerprints."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        with self.conn:
            self.conn.executescript("""
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
                CREATE TABLE IF NOT EXISTS topics (id INTEGER PRIMARY KEY, topic TEXT UNIQUE);
                CREATE TABLE IF NOT EXISTS checkpoints (
                    position INTEGER PRIMARY KEY, digest BLOB NOT NULL, recorded_at TEXT);
                CREATE TABLE IF NOT EXISTS events (
                    position INTEGER PRIMARY KEY, originator_id TEXT, version INTEGER,
                    topic_id INTEGER, fingerprint BLOB NOT NULL);
            """)
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('scheme', ?)", (SCHEME,))
        scheme = self.conn.execute("SELECT value FROM meta WHERE key='scheme'").fetchone()[0]
        if scheme != SCHEME:
            raise ChainBroken(f"{self.path} was written with scheme {scheme}, not {SCHEME}")
        self._topics = {t: i for i, t in self.conn.execute("SELECT id, topic FROM topics")}
        self._topic_names = {i: t for t, i in self._topics.items()}

    def close(self) -> None:
        self.conn.close()

    def head(self) -> tuple[int, bytes]:
        row = self.conn.execute(
            "SELECT position, digest FROM checkpoints ORDER BY position DESC LIMIT 1"
        ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def checkpoints(self, upto: int | None = None) -> list[tuple[int, bytes]]:
        sql = "SELECT position, digest FROM checkpoints"
        if upto is not None:
            return self.conn.execute(
                sql + " WHERE position <= ? ORDER BY position", (upto,)
            ).fetchall()
        return self.conn.execute(sql + " ORDER BY position").fetchall()

    def checkpoint_before(self, position: int) -> tuple[int, bytes]:
        row = self.conn.execute(
            "SELECT position, digest FROM checkpoints WHERE position <= ? "
            "ORDER BY position DESC LIMIT 1",
            (position,),
        ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def topic_name(self, topic_id: int | None) -> str | None:
        return self._topic_names.get(topic_id) if topic_id is not None else None

    def topic_id(self, topic: object) -> int:
        found = self._topics.get(topic) if isinstance(topic, str) else None
        if found is None:
            name = as_text(topic) or ""  # a damaged (undecodable) topic arrives as bytes
            found = self._topics.get(name)
            if found is None:
                # another AuditStore (the live follower, a digest request) may have added it
                self.conn.execute("INSERT OR IGNORE INTO topics (topic) VALUES (?)", (name,))
                found = self.conn.execute(
                    "SELECT id FROM topics WHERE topic = ?", (name,)
                ).fetchone()[0]
                assert found is not None
                self._topics[name] = found
                self._topic_names[found] = name
        return found

    def event(self, position: int) -> tuple | None:
        return self.conn.execute(
            "SELECT position, originator_id, version, topic_id, fingerprint FROM events "
            "WHERE position = ?",
            (position,),
        ).fetchone()

    def events(self, after: int, upto: int | None = None) -> Iterator[tuple]:
        sql = (
            "SELECT position, originator_id, version, topic_id, fingerprint FROM events "
            "WHERE position > ? AND position <= ? ORDER BY position"
        )
        cursor = self.conn.execute(sql, (after, _INF if upto is None else upto))
        while rows := cursor.fetchmany(FETCH):
            yield from rows

    def save(self, events: list[tuple], checkpoints: list[tuple[int, bytes]]) -> None:
        now = datetime.now(UTC).isoformat()
        self.conn.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?,?,?)", events)
        self.conn.executemany(
            "INSERT OR REPLACE INTO checkpoints VALUES (?,?,?)",
            [(p, d, now) for p, d in checkpoints],
        )


# ---------------------------------------------------------------------------- digests
def holes_in(rows: list[tuple], expected: int) -> list[tuple[int, int]]:
    """Position ranges missing before or inside a batch (positions are never skipped)."""
    first, last = rows[0][0], rows[-1][0]
    if first == expected and last - first == len(rows) - 1:
        return []
    found = []
    for row in rows:
        if row[0] != expected:
            found.append((expected, row[0] - 1))
        expected = row[0] + 1
    return found


def record(
    log: Any, store: AuditStore, progress: Progress | None = None
) -> tuple[int, bytes, int, list[tuple[int, int]]]:
    """Extend the record to the log's head; (position, digest, events added, holes seen).

    Refuses (ChainBroken) when the last recorded event is no longer what the record says:
    extending a chain over a rewritten log would bless the rewrite.
    """
    with _record_lock, store.conn:
        store.conn.execute("BEGIN IMMEDIATE")  # one recorder at a time, across processes too
        start, link = store.head()
        if start:
            _check_last(log, store, start)
        added, last, holes = 0, start, []
        for rows in scan(log, start):
            holes.extend(holes_in(rows, last + 1))
            link, fingerprints, links = chain_with_fingerprints(rows, link)
            events = [
                (
                    pos,
                    oid if type(oid) is str else as_text(oid),
                    ver if type(ver) is int else None,
                    store.topic_id(topic),
                    fp,
                )
                for (pos, oid, ver, topic, _), fp in zip(rows, fingerprints)
            ]
            checkpoints = [
                (row[0], after) for row, after in zip(rows, links) if row[0] % CHECKPOINT_EVERY == 0
            ]
            last = rows[-1][0]
            # Every commit ends on a checkpoint, so an interrupted run resumes from there.
            if checkpoints[-1:] != [(last, link)]:
                checkpoints.append((last, link))
            store.save(events, checkpoints)
            store.conn.commit()
            store.conn.execute("BEGIN IMMEDIATE")
            added += len(rows)
            if progress:
                progress(len(rows))
    return last, link, added, holes


def _check_last(log: Any, store: AuditStore, position: int) -> None:
    row = log_row(log, position)
    recorded = store.event(position)
    if row is None:
        raise ChainBroken(
            f"the event at position {position}, the last one recorded, is gone "
            "from the log; run `dataengine audit verify`"
        )
    if recorded is not None and fingerprint(canonical(*row)) != recorded[4]:
        raise ChainBroken(
            f"the event at position {position}, the last one recorded, has "
            "changed; run `dataengine audit verify`"
        )


def digest_at(log: Any, store: AuditStore, position: int) -> bytes:
    """The chain link at ``position`` (recorded as a checkpoint, e.g. for a manifest)."""
    head, link = record(log, store)[:2]
    if position == head:
        return link
    if position > head or position < 0:
        raise ValueError(f"the log ends at position {head}; there is no position {position}")
    start, link = store.checkpoint_before(position)
    if start == position:
        return link
    recorded = {p: fp for p, _, _, _, fp in store.events(start, position)}
    for rows in scan(log, start, position):
        for row in rows:
            data = canonical(*row)
            if recorded.get(row[0]) != fingerprint(data):
                raise ChainBroken(
                    f"the event at position {row[0]} differs from its record; "
                    "run `dataengine audit verify`"
                )
            link = next_link(link, data)
    with store.conn:
        store.save([], [(position, link)])
    return link
