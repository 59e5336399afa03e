"""The hash-chain follower of the log, and the record that makes its checks incremental.

``<data>/audit.sqlite`` keeps what an auditor needs to name damage, not just detect it:

* ``checkpoints(position, digest)``: the chain link (``domain.digest``) every
  ``CHECKPOINT_EVERY`` positions, at the head whenever a digest is taken, and at any
  position a digest was published for (dataset manifests);
* ``events(position, originator_id, version, topic_id, fingerprint)``: per event, the
  sha256 of its canonical bytes and who it belonged to, so a changed byte names its event
  and a deleted row is still named by aggregate id and version.

``record`` extends the record from its last checkpoint (only new events are hashed).
``verify`` recomputes the whole chain in one rowid-ordered scan, compares it at every
checkpoint, and only where a checkpoint disagrees (or the log ends early) merges the log
with the per-event record to list exactly which events were changed, removed or inserted.
Positions are SQLite rowids, which the store never skips: a hole is a deleted row.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from domain.digest import GENESIS, SCHEME, Text, canonical, fingerprint, next_link

AUDIT_FILE = "audit.sqlite"
CHECKPOINT_EVERY = 1000
FETCH = 20_000  # rows per fetchmany: big enough that the Python loop dominates
_FLUSH = 10_000  # events per commit of the record

Progress = Callable[[int], None]  # called with the number of rows just processed
_INF = (1 << 63) - 1  # the largest rowid
_record_lock = threading.Lock()


class ChainBroken(Exception):
    """The log no longer matches what the record says; `audit verify` names the damage."""


@dataclass(frozen=True, slots=True)
class Damage:
    """One difference between the log and the record (or a hole in the log).

    kind: "modified" (bytes differ), "missing" (recorded, gone from the log), "inserted"
    (a row where none was recorded), "gap" (positions absent from the log, never recorded).
    originator_id/version/topic: as recorded where the record has them, else as stored now.
    """

    position: int
    kind: str
    originator_id: str | None
    version: int | None
    topic: str | None
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"position": self.position, "kind": self.kind, "tree_id": self.originator_id,
                "version": self.version, "topic": self.topic, "detail": self.detail}


@dataclass(slots=True)
class Report:
    """What a verification found. ``digest`` is the link at ``position`` (the last row read)."""

    position: int = 0
    events: int = 0
    digest: bytes = GENESIS
    recorded: int = 0
    appended: int = 0
    damage: list[Damage] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.damage

    @property
    def first(self) -> Damage | None:
        return min(self.damage, key=lambda d: d.position) if self.damage else None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# ---------------------------------------------------------------------------- the log
def open_log(path: str | Path) -> sqlite3.Connection | None:
    """A read-only connection to events.sqlite handing TEXT out as raw ``Text`` bytes."""
    path = Path(path)
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    conn.text_factory = Text
    return conn


def _rows(log: sqlite3.Connection | None, after: int, upto: int | None = None
          ) -> Iterator[list[tuple]]:
    """Batches of (position, originator_id, version, topic, state) in position order."""
    if log is None:
        return
    sql = ("SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
           "WHERE rowid > ?")
    params: tuple[int, ...] = (after,)
    if upto is not None:
        sql += " AND rowid <= ?"
        params = (after, upto)
    try:
        cursor = log.execute(sql + " ORDER BY rowid", params)
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return  # nothing written yet
        raise
    while rows := cursor.fetchmany(FETCH):
        yield rows


def log_head(log: sqlite3.Connection | None) -> int:
    if log is None:
        return 0
    try:
        return log.execute("SELECT max(rowid) FROM stored_events").fetchone()[0] or 0
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return 0
        raise


def _log_row(log: sqlite3.Connection | None, position: int) -> tuple | None:
    for rows in _rows(log, position - 1, position):
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
            "SELECT position, digest FROM checkpoints ORDER BY position DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def checkpoints(self, upto: int | None = None) -> list[tuple[int, bytes]]:
        sql, params = "SELECT position, digest FROM checkpoints", ()
        if upto is not None:
            sql, params = sql + " WHERE position <= ?", (upto,)
        return self.conn.execute(sql + " ORDER BY position", params).fetchall()

    def checkpoint_before(self, position: int) -> tuple[int, bytes]:
        row = self.conn.execute(
            "SELECT position, digest FROM checkpoints WHERE position <= ? "
            "ORDER BY position DESC LIMIT 1", (position,)).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def topic_name(self, topic_id: int | None) -> str | None:
        return self._topic_names.get(topic_id) if topic_id is not None else None

    def topic_id(self, topic: str) -> int:
        found = self._topics.get(topic)
        if found is None:
            found = self.conn.execute("INSERT INTO topics (topic) VALUES (?)", (topic,)).lastrowid
            self._topics[topic] = found
            self._topic_names[found] = topic
        return found

    def event(self, position: int) -> tuple | None:
        return self.conn.execute(
            "SELECT position, originator_id, version, topic_id, fingerprint FROM events "
            "WHERE position = ?", (position,)).fetchone()

    def events(self, after: int, upto: int | None = None) -> Iterator[tuple]:
        sql = ("SELECT position, originator_id, version, topic_id, fingerprint FROM events "
               "WHERE position > ? AND position <= ? ORDER BY position")
        cursor = self.conn.execute(sql, (after, _INF if upto is None else upto))
        while rows := cursor.fetchmany(FETCH):
            yield from rows

    def save(self, events: list[tuple], checkpoints: list[tuple[int, bytes]]) -> None:
        now = datetime.now(timezone.utc).isoformat()
        self.conn.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?,?,?)", events)
        self.conn.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?)",
                              [(p, d, now) for p, d in checkpoints])


# ---------------------------------------------------------------------------- digests
def record(log: sqlite3.Connection | None, store: AuditStore, progress: Progress | None = None
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
        added, holes, expected = 0, [], start + 1
        events: list[tuple] = []
        checkpoints: list[tuple[int, bytes]] = []
        last = start
        for rows in _rows(log, start):
            for pos, oid, ver, topic, state in rows:
                if pos != expected:
                    holes.append((expected, pos - 1))
                expected = pos + 1
                data = canonical(pos, oid, ver, topic, state)
                link = next_link(link, data)
                events.append((pos, _text(oid), ver if type(ver) is int else None,
                               store.topic_id(_text(topic) or ""), fingerprint(data)))
                if pos % CHECKPOINT_EVERY == 0:
                    checkpoints.append((pos, link))
                last = pos
            added += len(rows)
            if len(events) >= _FLUSH:
                # Commit with a checkpoint at the batch's end, so every committed record
                # ends on a checkpoint and an interrupted run resumes from there.
                if checkpoints[-1:] != [(last, link)]:
                    checkpoints.append((last, link))
                store.save(events, checkpoints)
                store.conn.commit()
                store.conn.execute("BEGIN IMMEDIATE")
                events, checkpoints = [], []
            if progress:
                progress(len(rows))
        if last != start and (not checkpoints or checkpoints[-1][0] != last):
            checkpoints.append((last, link))
        store.save(events, checkpoints)
    return last, link, added, holes


def _check_last(log: sqlite3.Connection | None, store: AuditStore, position: int) -> None:
    row = _log_row(log, position)
    recorded = store.event(position)
    if row is None:
        raise ChainBroken(f"the event at position {position}, the last one recorded, is gone "
                          "from the log; run `dataengine audit verify`")
    if recorded is not None and fingerprint(canonical(*row)) != recorded[4]:
        raise ChainBroken(f"the event at position {position}, the last one recorded, has "
                          "changed; run `dataengine audit verify`")


def digest_at(log: sqlite3.Connection | None, store: AuditStore, position: int) -> bytes:
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
    for rows in _rows(log, start, position):
        for row in rows:
            data = canonical(*row)
            if recorded.get(row[0]) != fingerprint(data):
                raise ChainBroken(f"the event at position {row[0]} differs from its record; "
                                  "run `dataengine audit verify`")
            link = next_link(link, data)
    with store.conn:
        store.save([], [(position, link)])
    return link


# ---------------------------------------------------------------------------- verification
def verify(log: sqlite3.Connection | None, store: AuditStore, upto: int | None = None,
           progress: Progress | None = None) -> Report:
    """Recompute the chain from the genesis and check it against every recorded checkpoint.

    With ``upto`` only the log up to that position is checked (and must reach it).
    """
    checkpoints = store.checkpoints(upto)
    report = Report(recorded=checkpoints[-1][0] if checkpoints else 0)
    cps = iter(checkpoints)
    cp_pos, cp_digest = next(cps, (_INF, b""))
    link, expected, good, bad = GENESIS, 1, 0, False
    holes: list[tuple[int, int]] = []
    for rows in _rows(log, 0, upto):
        for pos, oid, ver, topic, state in rows:
            if pos > cp_pos:  # the checkpoint's own row is gone
                bad = True
                break
            if pos != expected:
                holes.append((expected, pos - 1))
            expected = pos + 1
            link = next_link(link, canonical(pos, oid, ver, topic, state))
            if pos == cp_pos:
                if link != cp_digest:
                    bad = True
                    break
                good = pos
                cp_pos, cp_digest = next(cps, (_INF, b""))
        else:
            report.position = rows[-1][0]
            report.events += len(rows)
            if progress:
                progress(len(rows))
            continue
        break
    if cp_pos != _INF:
        bad = True  # damage, or the log ends before a recorded checkpoint
    report.digest = link
    report.appended = max(0, report.position - report.recorded) if not bad else 0
    for a, b in holes:
        if a <= good or not bad:  # (past the last good checkpoint, _locate reports them)
            report.damage.append(Damage(a, "gap", None, None, None, _hole(a, b, good)))
    if upto is not None and not bad and report.position < upto:
        report.damage.append(Damage(report.position + 1, "gap", None, None, None,
                                    f"the log ends at position {report.position}"))
    if bad:
        report.damage.extend(_locate(log, store, good, upto, report))
    return report


def _hole(a: int, b: int, good: int) -> str:
    where = f"position {a}" if a == b else f"positions {a}..{b}"
    return f"{where} absent from the log" + (", already when recorded" if b <= good else "")


def _locate(log: sqlite3.Connection | None, store: AuditStore, after: int,
            upto: int | None, report: Report) -> list[Damage]:
    """Merge the log and the record from the last good checkpoint on, naming each difference."""
    found: list[Damage] = []
    recorded = store.events(after, upto)
    rec = next(recorded, None)
    expected, last_recorded = after + 1, report.recorded
    report.position = after
    report.events = log.execute("SELECT count(*) FROM stored_events WHERE rowid <= ?",
                                (after,)).fetchone()[0] if log is not None and after else 0

    def missing(r: tuple) -> Damage:
        return Damage(r[0], "missing", r[1], r[2], store.topic_name(r[3]),
                      "recorded, but gone from the log")

    for rows in _rows(log, after, upto):
        for row in rows:
            pos = row[0]
            while rec is not None and rec[0] < pos:
                found.append(missing(rec))
                rec = next(recorded, None)
            if pos > expected:
                hole = [d for d in found if expected <= d.position < pos and d.kind == "missing"]
                if len(hole) < pos - expected:
                    found.append(Damage(expected, "gap", None, None, None,
                                        _hole(expected, pos - 1, 0)))
            expected = pos + 1
            if rec is not None and rec[0] == pos:
                if fingerprint(canonical(*row)) != rec[4]:
                    found.append(_modified(row, rec, store))
                rec = next(recorded, None)
            elif pos <= last_recorded:
                found.append(Damage(pos, "inserted", _text(row[1]), row[2], _text(row[3]),
                                    "a row where none was recorded"))
            else:
                report.appended += 1
            report.position = pos
        report.events += len(rows)
    while rec is not None:
        found.append(missing(rec))
        rec = next(recorded, None)
    if not found:
        found.append(Damage(after + 1, "unexplained", None, None, None,
                            "the chain differs from a checkpoint, but every event matches its "
                            "fingerprint: the record itself was altered"))
    return sorted(found, key=lambda d: d.position)


def _modified(row: tuple, rec: tuple, store: AuditStore) -> Damage:
    pos, oid, ver, topic, _ = row
    topic_name = store.topic_name(rec[3])
    now = {"originator_id": _text(oid), "version": ver, "topic": _text(topic)}
    then = {"originator_id": rec[1], "version": rec[2], "topic": topic_name}
    changed = [f"{k} (now {now[k]!r})" for k in now if now[k] != then[k]]
    detail = "changed: " + ", ".join(changed) if changed else "state bytes changed"
    return Damage(pos, "modified", rec[1], rec[2], topic_name, detail)


def verify_digest(log: sqlite3.Connection | None, store: AuditStore, digest: bytes,
                  position: int, progress: Progress | None = None) -> Report:
    """Prove the log up to ``position`` is what ``digest`` was computed from.

    Needs nothing but the log; the record is consulted only to name the damage.
    """
    report = Report(recorded=position)
    link, expected = GENESIS, 1
    holes = []
    for rows in _rows(log, 0, position):
        for pos, oid, ver, topic, state in rows:
            if pos != expected:
                holes.append((expected, pos - 1))
            expected = pos + 1
            link = next_link(link, canonical(pos, oid, ver, topic, state))
        report.position = rows[-1][0]
        report.events += len(rows)
        if progress:
            progress(len(rows))
    report.digest = link
    if link == digest and report.position == position:
        return report  # the chain binds positions: matching it rules out holes
    located = verify(log, store, upto=position)
    report.damage = located.damage or [Damage(
        min([a for a, _ in holes] + [report.position + 1]), "unexplained", None, None, None,
        f"the log up to position {position} does not hash to the given digest, and the "
        f"audit record (up to position {located.recorded}) cannot name the difference: it "
        "agrees with the log as it is now")]
    return report
