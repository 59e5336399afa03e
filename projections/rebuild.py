"""Throw the read models away and project the whole log again.

The new file is built beside the live one and moved into place when complete, so
readers keep the old tables until the new ones are whole, and a failed or interrupted
rebuild leaves the old file untouched. Nobody else reads the scratch file, so it is
written without fsync or a rollback journal on disk (ReadModel.connect(bulk=True)), in
large batches.

A replay is CPU-bound Python, so with more than one core the projections are split
between worker processes (forked, each with its own scratch file, reading from the log
only the topics its projections handle), and the files are merged into the first one at
the end: SQLite copies a table whose schema matches an empty one row block by row block.
That is exact because a projection writes only its own tables and, unless it declares
``reads_others``, reads only them too; with such a reader, or a log that is not an
events.sqlite file, the rebuild runs in one process.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from api.storage.logdb import Location
from projections.base import Projection
from projections.log import LogSource, SQLiteLog
from projections.runner import ProjectionError, ProjectionRunner
from projections.store import ReadModel, default_projections

BATCH_SIZE = 50_000
MAX_WORKERS = 4  # each worker reads and decodes the log again: more rarely pays


def _remove(path: Path, suffixes: Sequence[str] = ("", "-wal", "-shm", "-journal")) -> None:
    for suffix in suffixes:
        try:
            os.remove(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def _replace(scratch: Path, path: Path) -> None:
    """Move ``scratch`` over ``path``; the old file's WAL must not outlive it."""
    if path.exists():
        try:  # fold the old WAL into its file, so removing the WAL loses nothing
            conn = sqlite3.connect(path)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            pass  # not a database any more: it is replaced as it is
    _remove(path, ("-wal", "-shm"))
    os.replace(scratch, path)


def default_workers() -> int:
    """One worker per idle core (cores less the last minute's load), at most MAX_WORKERS:
    on a machine busy with other work a second worker only competes for the same core
    and adds its own read of the log."""
    try:
        idle = (os.cpu_count() or 1) - os.getloadavg()[0]
    except OSError:  # no load average on this platform
        idle = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, round(idle)))


def split(projections: Sequence[Projection], workers: int) -> list[list[Projection]]:
    """Projections per worker, balanced by ``replay_cost`` (largest first onto the least
    loaded); each list keeps the projections' order. One list when a projection reads
    others' rows."""
    if workers <= 1 or any(p.reads_others for p in projections):
        return [list(projections)]
    loads = [0.0] * min(workers, len(projections))
    slots: dict[int, int] = {}
    by_cost = sorted(range(len(projections)), key=lambda i: -projections[i].replay_cost)
    for i in by_cost:
        slot = loads.index(min(loads))
        slots[i] = slot
        loads[slot] += projections[i].replay_cost
    return [
        [p for i, p in enumerate(projections) if slots[i] == slot] for slot in range(len(loads))
    ]


def rebuild(
    log: LogSource,
    path: str | Path,
    *,
    projections: Sequence[Projection] | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> tuple[int, float]:
    """Replay the log into a fresh read model at ``path``; returns (events, seconds).

    ``workers``: processes to split the projections between (default: default_workers();
    1 runs in this process)."""
    path = Path(path)
    projections = list(projections) if projections is not None else default_projections()
    started = time.perf_counter()
    head = log.head()
    groups = split(projections, default_workers() if workers is None else workers)
    if (
        len(groups) > 1
        and isinstance(log, SQLiteLog)
        and "fork" in (multiprocessing.get_all_start_methods())
    ):
        scratch = _parallel(log.path, path, projections, groups, head, batch_size, progress)
    else:
        scratch = _serial(log, path, projections, head, batch_size, progress)
    elapsed = time.perf_counter() - started
    _replace(scratch, path)
    return head, elapsed


def _scratch(path: Path, k: int = 0) -> Path:
    scratch = path.with_name(f"{path.name}.rebuild{k or ''}")
    _remove(scratch)
    return scratch


@contextmanager
def _no_gc() -> Iterator[None]:
    """A replay allocates millions of short-lived objects and keeps large caches, which
    the cyclic collector would walk again and again (a tenth of the time) to find no
    cycle: it is switched off for the run."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _serial(
    log: LogSource,
    path: Path,
    projections: list[Projection],
    head: int,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> Path:
    scratch = _scratch(path)
    runner = ProjectionRunner(log, scratch, projections, batch_size=batch_size, bulk=True)
    try:
        with _no_gc():
            runner.run_once(until=head, progress=progress)
    except BaseException:
        runner.close()
        _remove(scratch)
        raise
    runner.close()
    return scratch


# ---------------------------------------------------------------- in parallel
def _work(
    events: Location,
    scratch: Path,
    projections: list[Projection],
    head: int,
    batch_size: int,
    slot: int,
    positions: Any,
    errors: Any,
) -> None:
    """A worker's replay (in a forked process). Its position goes to ``positions[slot]``
    after every batch; a failure's text to ``errors``."""
    try:
        topics = sorted({t for p in projections for t in p.handlers()})
        log = SQLiteLog(events, topics=topics, stop=head)
        runner = ProjectionRunner(log, scratch, projections, batch_size=batch_size, bulk=True)
        try:
            with _no_gc():
                runner.run_once(
                    until=head, progress=lambda _: positions.__setitem__(slot, runner.position)
                )
        finally:
            runner.close()
            log.close()
        positions[slot] = head  # the rows after its last event were not its topics
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        # Short enough for the pipe's buffer: the parent reads it only once this exits.
        errors.put(f"{type(e).__name__}: {e}"[:4000])
        raise SystemExit(1) from None


def _parallel(
    events: Location,
    path: Path,
    projections: list[Projection],
    groups: list[list[Projection]],
    head: int,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> Path:
    context = multiprocessing.get_context("fork")
    positions = context.Array("q", len(groups), lock=False)
    errors = context.SimpleQueue()
    files = [_scratch(path, k) for k in range(len(groups))]
    procs = [
        context.Process(
            target=_work,
            name=f"rebuild-{k}",
            daemon=True,
            args=(events, files[k], group, head, batch_size, k, positions, errors),
        )
        for k, group in enumerate(groups)
    ]
    try:
        for proc in procs:
            proc.start()
        reported = 0
        while any(proc.is_alive() for proc in procs):
            reported = _report(progress, min(positions), reported)
            for proc in procs:
                proc.join(0.05)
            if any(proc.exitcode for proc in procs):
                break
        if any(proc.exitcode for proc in procs) or not errors.empty():
            failure = errors.get() if not errors.empty() else "a worker died"
            raise ProjectionError(f"rebuild failed: {failure}")
        _merge(files[0], files[1:], projections, groups[1:], head)
        _report(progress, head, reported)
    except BaseException:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
        for file in files:
            _remove(file)
        raise
    for file in files[1:]:
        _remove(file)
    return files[0]


def _report(progress: Callable[[int], None] | None, position: int, reported: int) -> int:
    if progress is not None and position > reported:
        progress(position - reported)
    return max(position, reported)


def _merge(
    target: Path,
    others: list[Path],
    projections: list[Projection],
    groups: list[list[Projection]],
    head: int,
) -> None:
    """Copy the other workers' tables into ``target``'s file; every projection is then at
    ``head`` (a worker stops at the last event of its topics, the rest are not theirs)."""
    model = ReadModel(target, projections)
    conn = model.connect(bulk=True)
    try:
        model.create(conn)  # the others' tables, indexes and tracking rows, empty
        for other, group in zip(others, groups):
            conn.execute("ATTACH DATABASE ? AS part", (str(other),))
            conn.execute("BEGIN")
            for projection in group:
                for table in projection.tables:
                    conn.execute(f"INSERT INTO main.{table} SELECT * FROM part.{table}")
            conn.execute("COMMIT")
            conn.execute("DETACH DATABASE part")
        conn.execute("UPDATE tracking SET position = ?", (head,))
    finally:
        conn.close()
