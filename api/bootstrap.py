"""The composition root: the data folder, the event store it holds and the application on it.

Everything that starts the system (the CLI, the HTTP server, the flywheel, tests) opens the
application here, so the choice of store adapter and its settings live in one place.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

from api.storage.events import EVENTS_FILE, GroupCommitSQLiteRecorder
from api.storage.logdb import describe, log_exists, log_location, store_url
from api.storage.pg_url import postgres_env
from domain.model.config import TreeConfig
from domain.model.errors import ConfigError
from domain.service.application import DataEngine


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    folder = Path(path or os.environ.get("DATAENGINE_DATA") or "data")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_storage(folder: str | os.PathLike[str]) -> Path:
    """Stop a server's start-up, naming the file and the cause, when the data folder or a
    store in it cannot be written: otherwise a read-only or unwritable folder opens (SQLite
    reads fine) and fails later, at the first command or projected batch.

    The folder must take new files (SQLite's -wal/-shm/-journal, read models set aside, image
    blobs) and every SQLite file there must open for writing. The OS is asked by doing it
    (a probe file; ``O_RDWR``), not by permission bits, which root and read-only mounts defeat.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"cannot start: cannot create the data folder {folder}: {_cause(e)}"
        ) from None
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            probe.unlink()
    except OSError as e:
        if e.errno != errno.ENOSPC:  # a full disk is transient: writes answer 507 meanwhile
            raise ConfigError(
                f"cannot start: the data folder {folder} does not take new files: {_cause(e)}"
            ) from None
    for path in sorted(folder.glob("*.sqlite")) + sorted(folder.glob("*.sqlite-[ws][ah][lm]")):
        try:
            os.close(os.open(path, os.O_RDWR))
        except OSError as e:
            raise ConfigError(f"cannot start: {path} is not writable: {_cause(e)}") from None
    return folder


def _cause(error: OSError) -> str:
    return error.strerror or str(error)


def store_env(folder: Path, store: str | None = None) -> dict[str, str]:
    """eventsourcing's settings for the log: the PostgreSQL store named by ``store`` or
    $DATAENGINE_STORE (``postgresql://user:pass@host:port/db?schema=s``), else the SQLite
    file in the data folder (read models stay in the folder either way)."""
    try:
        url = store or store_url()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if url:
        try:
            return postgres_env(url)
        except Exception as e:  # noqa: BLE001 - psycopg's parse errors, reported as config
            raise ConfigError(f"cannot use the store {describe(url)}: {e}") from None
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(folder / EVENTS_FILE),
        "SQLITE_LOCK_TIMEOUT": "30",
        "APPLICATION_RECORDER_TOPIC": "api.storage.events:GroupCommitSQLiteRecorder",
    }


SYNCHRONOUS_LEVELS = ("FULL", "NORMAL")


def open_app(
    folder: str | os.PathLike[str] | None = None,
    config: TreeConfig | None = None,
    synchronous: str | None = None,
    store: str | None = None,
    **kwargs: Any,
) -> DataEngine:
    """The application on the store (``store_env``): by default the SQLite file in the
    data folder (created if missing).

    synchronous (default $DATAENGINE_SYNCHRONOUS, else FULL): FULL fsyncs the WAL at every
    commit, so an acknowledged command survives power loss. NORMAL is opt-in and weaker:
    the WAL is synced only at checkpoints, so a power cut (not a process crash) can lose
    the last acknowledged commits; the database itself stays consistent.

    Messages (tasks) of a log written before the message (task) index existed are indexed
    on opening (DataEngine.index_messages, index_tasks: once; afterwards one indexed read).
    """
    level = (synchronous or os.environ.get("DATAENGINE_SYNCHRONOUS") or "FULL").upper()
    if level not in SYNCHRONOUS_LEVELS:
        raise ConfigError(
            f"DATAENGINE_SYNCHRONOUS must be one of {', '.join(SYNCHRONOUS_LEVELS)}, not {level!r}"
        )
    app = DataEngine(env=store_env(data_dir(folder), store), config=config, **kwargs)
    if isinstance(app.recorder, GroupCommitSQLiteRecorder):
        app.recorder.synchronous = level
    try:
        app.index_messages()  # a log written before the message index: indexed once
        app.index_tasks()  # a log written before the task index: indexed once
    except BaseException:
        app.close()
        raise
    return app


def load_config(folder: Path | None = None, environ: dict[str, str] | None = None) -> TreeConfig:
    """Config from DATAENGINE_CONFIG (a TOML file) or <data>/config.toml, then the environment."""
    environ = dict(os.environ if environ is None else environ)
    path = environ.get("DATAENGINE_CONFIG")
    if not path and folder is not None and (folder / "config.toml").exists():
        path = str(folder / "config.toml")
    if path:
        return TreeConfig.from_toml(Path(path).read_text(), env=environ)
    return TreeConfig.from_env(environ)


def caught_up_runner(data: str) -> Any:
    """A connection to the read model, caught up with the whole log."""
    from tqdm import tqdm

    from projections.log import StoreLog
    from projections.runner import ProjectionRunner
    from projections.store import READMODEL_FILE

    folder = data_dir(data)
    location = log_location(folder)
    if not log_exists(location):
        raise FileNotFoundError(f"no event store in {describe(location)}")
    runner = ProjectionRunner(StoreLog(location), folder / READMODEL_FILE)
    behind = runner.log.head() - runner.position
    with tqdm(
        total=behind,
        unit="ev",
        unit_scale=True,
        desc="read model",
        file=sys.stderr,
        disable=behind == 0,
    ) as bar:
        runner.run_once(progress=bar.update)
    return runner
