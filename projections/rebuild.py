"""Throw the read models away and project the whole log again.

The new file is built beside the live one and moved into place when complete, so
readers keep the old tables until the new ones are whole, and a failed or interrupted
rebuild leaves the old file untouched. Nobody else reads the scratch file, so it is
written without fsync or a rollback journal on disk (ReadModel.connect(bulk=True)), in
large batches.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Callable, Sequence

from projections.base import Projection
from projections.log import LogSource
from projections.runner import ProjectionRunner

BATCH_SIZE = 50_000


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


def rebuild(log: LogSource, path: str | Path, *, projections: Sequence[Projection] | None = None,
            batch_size: int = BATCH_SIZE, progress: Callable[[int], None] | None = None
            ) -> tuple[int, float]:
    """Replay the log into a fresh read model at ``path``; returns (events, seconds)."""
    path = Path(path)
    scratch = path.with_name(path.name + ".rebuild")
    _remove(scratch)
    started = time.perf_counter()
    head = log.head()
    runner = ProjectionRunner(log, scratch, projections, batch_size=batch_size, bulk=True)
    try:
        runner.run_once(until=head, progress=progress)
    except BaseException:
        runner.close()
        _remove(scratch)
        raise
    runner.close()
    elapsed = time.perf_counter() - started
    _replace(scratch, path)
    return head, elapsed
