"""Leases for work that exactly one server process may do at a time (the process loop, the
live audit chain, a lottery draw), and the read-model slots of several processes.

A lease is held for as long as its holder lives, and lost when it dies, however it dies
(kill -9 included): there is no expiry to tune and no clock to trust.

- One machine (the SQLite store): an ``flock`` on a file in the data folder. The kernel
  drops it when the holder's file descriptor closes, which process death always does.
- Many machines (the PostgreSQL store): a session-level advisory lock, held by a
  connection of its own. The server drops it when the session ends; a killed holder's
  session ends when its socket closes, and a vanished machine's when TCP keepalives give
  up on it (set below: about 15 s). ``held`` asks the server each time (one round trip,
  every few seconds), so a holder whose session was lost stops acting before another
  process can have taken over.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from api.storage.logdb import Location
from api.storage.pg_url import is_postgres, split_url

log = logging.getLogger("dataengine.leases")

WORKERS_FOLDER = "workers"


class Lease(Protocol):
    def held(self) -> bool:
        """Whether this process holds the lease now (taking it if it is free)."""
        ...

    def release(self) -> None: ...


class FileLease:
    """An exclusive ``flock`` on ``path``, taken without waiting."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None
        self._lock = threading.Lock()

    def held(self) -> bool:
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    return False
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for people
                self._fd = fd
            return True

    def release(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)  # closing drops the flock
                self._fd = None


# TCP keepalives on the lease's session: a holder whose machine vanished loses the
# lease after about idle + interval * count seconds.
_KEEPALIVE: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


class PostgresLease:
    """``pg_try_advisory_lock`` on a session of its own. Advisory locks are per database,
    so the key names the store's schema as well as the lease."""

    def __init__(self, url: str, name: str):
        self.libpq, schema = split_url(url)
        self.key = f"dataengine:{schema}:{name}"
        self._conn: Any = None
        self._lock = threading.Lock()

    def held(self) -> bool:
        import psycopg

        with self._lock:
            try:
                if self._conn is None:
                    self._conn = psycopg.connect(
                        self.libpq, autocommit=True, connect_timeout=5, **_KEEPALIVE
                    )
                    row = self._conn.execute(
                        "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (self.key,)
                    ).fetchone()
                    if not row[0]:
                        self._drop()
                        return False
                    return True
                # Still ours only while the session that took it lives.
                self._conn.execute("SELECT 1").fetchone()
                return True
            except psycopg.Error as e:
                log.warning("lease %s: the database did not answer: %s", self.key, e)
                self._drop()
                return False

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()  # ends the session: the server drops its advisory locks
            except Exception:  # noqa: BLE001 - a broken connection closes anyway
                pass
            self._conn = None

    def release(self) -> None:
        with self._lock:
            self._drop()


class Announced:
    """A lease that logs when this process gains or loses it (who runs the work)."""

    def __init__(self, lease: FileLease | PostgresLease, work: str):
        self.lease, self.work = lease, work
        self._held = False

    def held(self) -> bool:
        held = self.lease.held()
        if held != self._held:
            self._held = held
            if held:
                log.warning("%s runs in this process (pid %d)", self.work, os.getpid())
            else:
                log.warning("%s no longer runs in this process (pid %d)", self.work, os.getpid())
        return held

    def release(self) -> None:
        self._held = False
        self.lease.release()


def lease_for(folder: Path, location: Location, name: str) -> FileLease | PostgresLease:
    """The lease ``name`` for the store at ``location`` (its data folder for SQLite)."""
    if is_postgres(location):
        return PostgresLease(str(location), name)
    return FileLease(Path(folder) / f"{name}.lease")


class LeaseKeeper:
    """Asks for a lease every ``interval`` seconds; ``gained`` runs when this process
    becomes the holder, ``lost`` when it stops being one (and at ``stop``)."""

    def __init__(
        self,
        lease: FileLease | PostgresLease,
        gained: Callable[[], None],
        lost: Callable[[], None],
        *,
        interval: float = 1.0,
    ):
        self.lease, self.gained, self.lost = lease, gained, lost
        self.interval = interval
        self.leading = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LeaseKeeper:
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # noqa: BLE001 - logged; the next check tries again
                log.error("a lease check failed", exc_info=True)
            self._stop.wait(self.interval)

    def check(self) -> bool:
        held = self.lease.held()
        if held and not self.leading:
            log.info("this process (pid %d) now runs the leased work", os.getpid())
            self.gained()  # if it fails, the next check tries again (the lease is kept)
            self.leading = True
        elif not held and self.leading:
            self.leading = False
            log.warning("this process (pid %d) lost the lease", os.getpid())
            self.lost()
        return held

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.leading:
            self.leading = False
            self.lost()
        self.lease.release()


def claim_slot(folder: Path, limit: int = 256) -> tuple[Path, FileLease]:
    """A folder of its own for this server process's read models, under
    ``<data>/workers/<n>``: the lowest slot no living process holds, so a restarted
    process takes over a dead one's read model and only follows the log from there."""
    for n in range(limit):
        slot = Path(folder) / WORKERS_FOLDER / str(n)
        lease = FileLease(slot / "slot.lease")
        if lease.held():
            return slot, lease
    raise RuntimeError(f"more than {limit} server processes on {folder}")
