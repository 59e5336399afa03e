"""The read models as `audit replay` sees them: rebuild from the log and list every row.

A rebuild follows the same log up to the live model's position into a fresh file; the
auditor then compares the two row by row (projections.audit.history.replay).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from api.storage.logdb import log_location
from projections.log import SQLiteLog
from projections.runner import ProjectionRunner
from projections.store import READMODEL_FILE, ReadModel


class ProjectionReadModel:
    """Every table of the default projections in <folder>/readmodel.sqlite."""

    name = "readmodel"

    def position(self, folder: Path) -> int:
        path = Path(folder) / READMODEL_FILE
        if not path.exists():
            return 0
        positions = ReadModel(path).positions(sqlite3.connect(path))
        return min(positions.values()) if positions else 0

    def rebuild(self, data: Path, target: Path, upto: int) -> None:
        # The data folder's log: its events.sqlite, or the configured PostgreSQL store.
        log = SQLiteLog(log_location(data))
        try:
            runner = ProjectionRunner(log, Path(target) / READMODEL_FILE, batch_size=5000)
            runner.run_once(until=upto)
        finally:
            log.close()

    def rows(self, folder: Path) -> Iterable[tuple]:
        path = Path(folder) / READMODEL_FILE
        if not path.exists():
            return
        conn = sqlite3.connect(path)
        try:
            for table in ReadModel(path).tables():
                for row in conn.execute(f"SELECT * FROM {table}"):
                    yield (table, *row)
        finally:
            conn.close()


read_model = ProjectionReadModel()
