"""Where the event log lives: the SQLite store with group commit, and the data folder.

Group commit: every commit of the log pays one fsync (WAL, synchronous=FULL: nothing
acknowledged is lost, even on power failure). Concurrent requests therefore share
commits: the first writer to find no commit in progress becomes the committer and
writes every pending request in one transaction, each inside its own SAVEPOINT so a
version conflict fails only its own request. A lone writer commits at once.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Sequence

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from domain.application import DataEngine
from domain.config import TreeConfig

EVENTS_FILE = "events.sqlite"


class _Pending:
    __slots__ = ("events", "ids", "error", "done")

    def __init__(self, events: Sequence[StoredEvent]):
        self.events = events
        self.ids: Sequence[int] | None = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommitSQLiteRecorder(SQLiteApplicationRecorder):
    max_batch = 512

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._committing = False

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        request = _Pending(stored_events)
        with self._cond:
            self._queue.append(request)
        while True:
            with self._cond:
                while self._committing and not request.done:
                    self._cond.wait()
                if request.done:
                    break
                self._committing = True
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            try:
                self._commit(batch)
            finally:
                with self._cond:
                    for item in batch:
                        item.done = True
                    self._committing = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        return request.ids

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self.datastore.transaction(commit=True) as c:
                if len(batch) == 1:
                    batch[0].ids = self._insert_events(c, batch[0].events)
                    return
                for item in batch:
                    c.execute("SAVEPOINT request")
                    try:
                        item.ids = self._insert_events(c, item.events)
                    except sqlite3.IntegrityError as e:
                        c.execute("ROLLBACK TO request")
                        item.error = IntegrityError(e)
                    c.execute("RELEASE request")
        except BaseException as e:  # the whole transaction failed: nobody was recorded
            for item in batch:
                item.ids = None
                if item.error is None:
                    item.error = e


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    folder = Path(path or os.environ.get("DATAENGINE_DATA") or "data")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def store_env(folder: Path) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(folder / EVENTS_FILE),
        "SQLITE_LOCK_TIMEOUT": "30",
        "APPLICATION_RECORDER_TOPIC": "api.storage:GroupCommitSQLiteRecorder",
    }


def open_app(folder: str | os.PathLike[str] | None = None, config: TreeConfig | None = None,
             **kwargs: Any) -> DataEngine:
    """The application on the SQLite store in the data folder (created if missing)."""
    return DataEngine(env=store_env(data_dir(folder)), config=config, **kwargs)


def load_config(folder: Path | None = None, environ: dict[str, str] | None = None) -> TreeConfig:
    """Config from DATAENGINE_CONFIG (a TOML file) or <data>/config.toml, then the environment."""
    environ = dict(os.environ if environ is None else environ)
    path = environ.get("DATAENGINE_CONFIG")
    if not path and folder is not None and (folder / "config.toml").exists():
        path = str(folder / "config.toml")
    if path:
        return TreeConfig.from_toml(Path(path).read_text(), env=environ)
    return TreeConfig.from_env(environ)
