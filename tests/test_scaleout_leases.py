"""The scale-out adapters on their own: leases (flock, PostgreSQL advisory locks) and the
shared rate log, under contention from threads and processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from api.http.ratelimit import Rule
from api.storage.leases import Announced, FileLease, LeaseKeeper, PostgresLease, claim_slot
from api.storage.rate_log import PostgresRateLog, SQLiteRateLog

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_a_file_lease_has_one_holder_and_frees_when_its_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "loop.lease"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        mine = FileLease(path)
        assert not mine.held()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        assert mine.held() and mine.held()  # taken over, and kept
        assert not FileLease(path).held()  # another descriptor: a second holder is refused
        mine.release()
        assert FileLease(path).held()
    finally:
        holder.kill()
        holder.wait()


def test_slots_are_distinct_and_reused(tmp_path: Path) -> None:
    first, lease0 = claim_slot(tmp_path)
    second, lease1 = claim_slot(tmp_path)
    assert first != second and first.name == "0" and second.name == "1"
    lease0.release()
    again, lease2 = claim_slot(tmp_path)
    assert again == first  # a restarted process follows on from a dead one's read model
    lease1.release()
    lease2.release()


def test_a_keeper_runs_the_work_once_and_hands_it_over(tmp_path: Path) -> None:
    events: list[str] = []
    a = LeaseKeeper(
        FileLease(tmp_path / "x.lease"), lambda: events.append("a+"), lambda: events.append("a-")
    )
    b = LeaseKeeper(
        FileLease(tmp_path / "x.lease"), lambda: events.append("b+"), lambda: events.append("b-")
    )
    assert a.check() and not b.check() and a.check()
    a.stop()  # gives the lease back
    assert b.check()
    b.stop()
    assert events == ["a+", "a-", "b+", "b-"]


def test_postgres_lease_one_holder_per_schema_and_lost_with_its_session(postgres: Any) -> None:
    import psycopg

    url = postgres.url()
    a, b = PostgresLease(url, "loop"), PostgresLease(url, "loop")
    other_schema = PostgresLease(postgres.url(), "loop")
    try:
        assert a.held() and not b.held() and a.held()
        assert other_schema.held()  # another store's lease is another lock
        # the holder's session ends (as when its machine is gone): it no longer holds it
        with psycopg.connect(a.libpq, autocommit=True) as admin:
            pid = a._conn.info.backend_pid
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while not b.held() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.held()
        assert not a.held()
    finally:
        for lease in (a, b, other_schema):
            lease.release()


def test_announced_lease_logs_changes(tmp_path: Path, caplog: Any) -> None:
    lease = Announced(FileLease(tmp_path / "l.lease"), "the work")
    with caplog.at_level("WARNING", logger="dataengine.leases"):
        assert lease.held() and lease.held()
    assert sum("the work runs in this process" in r.message for r in caplog.records) == 1
    lease.release()


def _contend(rate_log: Any, threads: int, each: int) -> int:
    rule = Rule(10, 60)
    admitted = [0] * threads

    def run(i: int) -> None:
        for _ in range(each):
            if rate_log.admit([(("user", "u1"), rule)]) == 0:
                admitted[i] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(admitted)


def test_sqlite_rate_log_is_atomic_across_connections(tmp_path: Path) -> None:
    assert _contend(SQLiteRateLog(tmp_path / "rate.sqlite"), threads=6, each=10) == 10
    # a second log on the same file (another process) sees the same window
    other = SQLiteRateLog(tmp_path / "rate.sqlite")
    assert other.admit([(("user", "u1"), Rule(10, 60))]) > 0
    assert other.admit([(("user", "u2"), Rule(10, 60))]) == 0


def test_sqlite_rate_log_window_slides(tmp_path: Path) -> None:
    now = [1000.0]
    log = SQLiteRateLog(tmp_path / "rate.sqlite", clock=lambda: now[0])
    rule = Rule(2, 10)
    assert log.admit([("k", rule)]) == 0
    now[0] += 4
    assert log.admit([("k", rule)]) == 0
    assert log.admit([("k", rule)]) == pytest.approx(6)  # until the first leaves the window
    now[0] += 6
    assert log.admit([("k", rule)]) == 0
    # a refused request records nothing under any of its rules
    assert log.admit([("k", rule), ("j", rule)]) > 0
    assert log.admit([("j", Rule(1, 10))]) == 0


def test_postgres_rate_log_is_atomic_across_connections(pg_url: str) -> None:
    assert _contend(PostgresRateLog(pg_url), threads=6, each=10) == 10
    assert PostgresRateLog(pg_url).admit([(("user", "u1"), Rule(10, 60))]) > 0
