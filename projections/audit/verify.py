"""Checking the log against its hash chain, and naming exactly what changed.

``verify`` recomputes the chain from the genesis and compares it at every recorded
checkpoint. The chain is sequential, but its check is not: a block of rows between two
checkpoints must lead from the first recorded link to the second, and if every block does,
then by induction from the genesis every recorded link is the true one. So blocks are
checked in parallel worker processes (each one rowid-range scan) and the record's links
are only hints: a wrong hint fails its block, it can never make a bad log pass.

Only where a block fails (or the log ends before a checkpoint) is the log merged, one row
at a time, with the per-event record from the last good checkpoint on, to list every
event that was changed, removed or inserted.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from api.storage.logdb import Location, location_of
from projections.audit.chain import GENESIS, canonical, chain, fingerprint
from projections.audit.record import AuditStore, Progress, as_text, holes_in, open_log, scan

TASK_EVENTS = 100_000  # positions per parallel task
_POSITION = itemgetter(0)
Checkpoints = list[tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class Damage:
    """One difference between the log and the record (or a hole in the log).

    kind: "modified" (bytes differ), "missing" (recorded, gone from the log), "inserted"
    (a row where none was recorded), "gap" (positions absent from the log, never recorded),
    "unexplained" (the chain differs, no single event can be blamed).
    originator_id/version/topic: as recorded where the record has them, else as stored now.
    """

    position: int
    kind: str
    originator_id: str | None
    version: int | None
    topic: str | None
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "position": self.position,
            "kind": self.kind,
            "tree_id": self.originator_id,
            "version": self.version,
            "topic": self.topic,
            "detail": self.detail,
        }


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


@dataclass(slots=True)
class _Run:
    """One range (start, end] chained from a known link, compared at its checkpoints."""

    good: int  # the last checkpoint that matched (or start)
    bad: bool
    link: bytes
    last: int  # the last position read
    events: int
    holes: list[tuple[int, int]]


def _check(
    log: Any,
    start: int,
    link: bytes,
    checkpoints: Checkpoints,
    end: int | None,
    progress: Progress | None = None,
) -> _Run:
    run = _Run(start, False, link, start, 0, [])
    expected, k = start + 1, 0
    for rows in scan(log, start, end):
        run.holes.extend(holes_in(rows, expected))
        expected, i = rows[-1][0] + 1, 0
        # Chain the batch in runs that end on the checkpoints it contains.
        while k < len(checkpoints) and checkpoints[k][0] <= rows[-1][0]:
            cp_pos, cp_digest = checkpoints[k]
            j = bisect_left(rows, cp_pos, lo=i, key=_POSITION)
            run.link = link = chain(rows[i : j + 1], link)
            if rows[j][0] != cp_pos or link != cp_digest:  # changed, or its own row is gone
                run.bad = True
                return run
            run.good, i, k = cp_pos, j + 1, k + 1
        run.link = link = chain(rows[i:], link)
        run.last = rows[-1][0]
        run.events += len(rows)
        if progress:
            progress(len(rows))
    run.bad = k < len(checkpoints)  # the log ends before a recorded checkpoint
    return run


def _check_in_worker(
    path: Location, start: int, link: bytes, checkpoints: Checkpoints, end: int | None
) -> _Run:
    return _check(open_log(path), start, link, checkpoints, end)


def _tasks(
    checkpoints: Checkpoints, end: int | None
) -> list[tuple[int, bytes, Checkpoints, int | None]]:
    tasks: list[tuple[int, bytes, Checkpoints, int | None]] = []
    start, link, group = 0, GENESIS, []
    for position, digest in checkpoints:
        group.append((position, digest))
        if position - start >= TASK_EVENTS:
            tasks.append((start, link, group, position))
            start, link, group = position, digest, []
    tasks.append((start, link, group, end))  # the rest, and what was appended after it
    return tasks


def _check_all(
    log: Any,
    checkpoints: Checkpoints,
    end: int | None,
    workers: int,
    progress: Progress | None,
) -> _Run:
    """Chain the whole log (up to ``end``), in parallel blocks where that pays."""
    tasks = _tasks(checkpoints, end)
    if workers <= 1 or len(tasks) < 2 or log is None:
        return _check(log, 0, GENESIS, checkpoints, end, progress)
    path = location_of(log)  # each worker opens its own connection
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
        futures = [pool.submit(_check_in_worker, path, *task) for task in tasks]
        total = _Run(0, False, GENESIS, 0, 0, [])
        for future in futures:  # in log order: stop at the first block that fails
            run = future.result()
            total.holes += run.holes
            total.good, total.bad, total.link = run.good, run.bad, run.link
            total.last = max(total.last, run.last)
            total.events += run.events
            if progress:
                progress(run.events)
            if run.bad:
                for rest in futures:
                    rest.cancel()
                break
    return total


def verify(
    log: Any,
    store: AuditStore,
    upto: int | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> Report:
    """Recompute the chain from the genesis and check it against every recorded checkpoint.

    With ``upto`` only the log up to that position is checked (and must reach it).
    """
    checkpoints = store.checkpoints(upto)
    report = Report(recorded=checkpoints[-1][0] if checkpoints else 0)
    run = _check_all(log, checkpoints, upto, workers, progress)
    report.position, report.events, report.digest = run.last, run.events, run.link
    if not run.bad:
        report.appended = max(0, run.last - report.recorded)
    for a, b in run.holes:
        if not run.bad or a <= run.good:  # past the last good checkpoint _locate reports them
            where = f"position {a}" if a == b else f"positions {a}..{b}"
            known = ", already when recorded" if b <= run.good else ""
            report.damage.append(
                Damage(a, "gap", None, None, None, f"{where} absent from the log{known}")
            )
    if upto is not None and not run.bad and report.position < upto:
        report.damage.append(
            Damage(
                report.position + 1,
                "gap",
                None,
                None,
                None,
                f"the log ends at position {report.position}",
            )
        )
    if run.bad:
        report.damage.extend(_locate(log, store, run.good, upto, report))
    return report


def _locate(
    log: Any, store: AuditStore, after: int, upto: int | None, report: Report
) -> list[Damage]:
    """Merge the log and the record from the last good checkpoint on, naming each difference."""
    found: list[Damage] = []
    recorded = store.events(after, upto)
    rec = next(recorded, None)
    expected, last_recorded = after + 1, report.recorded
    report.position = after
    report.events = (
        log.execute("SELECT count(*) FROM stored_events WHERE rowid <= ?", (after,)).fetchone()[0]
        if log is not None and after
        else 0
    )

    for rows in scan(log, after, upto):
        for row in rows:
            pos = row[0]
            while rec is not None and rec[0] < pos:
                found.append(_missing(rec, store))
                rec = next(recorded, None)
            if pos > expected and (gap := _gap(found, expected, pos)) is not None:
                found.append(gap)
            expected = pos + 1
            if rec is not None and rec[0] == pos:
                if fingerprint(canonical(*row)) != rec[4]:
                    found.append(_modified(row, rec, store))
                rec = next(recorded, None)
            elif pos <= last_recorded:
                found.append(_inserted(row))
            else:
                report.appended += 1
            report.position = pos
        report.events += len(rows)
    while rec is not None:
        found.append(_missing(rec, store))
        rec = next(recorded, None)
    if not found:
        found.append(
            Damage(
                after + 1,
                "unexplained",
                None,
                None,
                None,
                "the chain differs from a checkpoint, but every event matches its "
                "fingerprint: the audit record itself was altered",
            )
        )
    return sorted(found, key=lambda d: d.position)


def _missing(rec: tuple, store: AuditStore) -> Damage:
    return Damage(
        rec[0],
        "missing",
        rec[1],
        rec[2],
        store.topic_name(rec[3]),
        "recorded, but gone from the log",
    )


def _gap(found: list[Damage], expected: int, pos: int) -> Damage | None:
    """Positions expected..pos-1 are absent from the log: a gap unless each was recorded
    (then each is already named missing)."""
    named = sum(1 for d in found if d.kind == "missing" and expected <= d.position)
    if named >= pos - expected:
        return None
    return Damage(
        expected, "gap", None, None, None, f"positions {expected}..{pos - 1} absent from the log"
    )


def _inserted(row: tuple) -> Damage:
    return Damage(
        row[0],
        "inserted",
        as_text(row[1]),
        row[2],
        as_text(row[3]),
        "a row where none was recorded",
    )


def _modified(row: tuple, rec: tuple, store: AuditStore) -> Damage:
    pos, oid, ver, topic, _ = row
    topic_name = store.topic_name(rec[3])
    now = {"originator_id": as_text(oid), "version": ver, "topic": as_text(topic)}
    then = {"originator_id": rec[1], "version": rec[2], "topic": topic_name}
    changed = [f"{k} (now {now[k]!r})" for k in now if now[k] != then[k]]
    detail = "changed: " + ", ".join(changed) if changed else "state bytes changed"
    return Damage(pos, "modified", rec[1], rec[2], topic_name, detail)


def verify_digest(
    log: Any,
    store: AuditStore,
    digest: bytes,
    position: int,
    progress: Progress | None = None,
    workers: int = 1,
) -> Report:
    """Prove the log up to ``position`` is what ``digest`` was computed from.

    The record's checkpoints serve only as hints to split the work; should they disagree
    with the log, the chain is recomputed in one sequential pass. The record is consulted
    otherwise only to name the damage.
    """
    report = Report(recorded=position)
    run = _check_all(log, store.checkpoints(position), position, workers, progress)
    if run.bad:
        run = _check(log, 0, GENESIS, [], position)
    report.position, report.events, report.digest = run.last, run.events, run.link
    if run.link == digest and run.last == position:
        return report  # the chain binds positions: matching it rules out holes
    located = verify(log, store, upto=position)
    report.damage = located.damage or [
        Damage(
            min([a for a, _ in run.holes] + [run.last + 1]),
            "unexplained",
            None,
            None,
            None,
            f"the log up to position {position} does not hash to the given digest, and the "
            f"audit record (up to position {located.recorded}) cannot name the difference: it "
            "agrees with the log as it is now",
        )
    ]
    return report


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))
