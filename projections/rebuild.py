"""Throw the read models away and project the whole log again.

The new file is built beside the live one and moved into place when complete, so
readers keep the old tables until the new ones are whole, and a failed rebuild leaves
the old file untouched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

from projections.base import Projection
from projections.log import LogSource
from projections.runner import ProjectionRunner


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def rebuild(log: LogSource, path: str | Path, *, projections: Sequence[Projection] | None = None,
            batch_size: int = 2000, progress: Callable[[int], None] | None = None
            ) -> tuple[int, float]:
    """Replay the log into a fresh read model at ``path``; returns (events, seconds)."""
    path = Path(path)
    scratch = path.with_name(path.name + ".rebuild")
    _remove(scratch)
    started = time.perf_counter()
    head = log.head()
    runner = ProjectionRunner(log, scratch, projections, batch_size=batch_size)
    try:
        runner.run_once(until=head, progress=progress)
        runner._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        runner.close()
    elapsed = time.perf_counter() - started
    _remove(path)
    os.replace(scratch, path)
    _remove(scratch)
    return head, elapsed
