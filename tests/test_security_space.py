"""Disk full, then space again: the projection runner and the process loop resume by
themselves (no restart). The full disk is SQLite's own SQLITE_FULL, produced by capping the
read model's ``max_page_count`` at its current size (this machine allows no small tmpfs
or loop mount for tests); raising the cap is space returning."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest

from api.storage.space import disk_full
from domain.model.states import TreeState
from domain.service.oa_import import import_trees
from domain.service.processes import ProcessLoop
from projections.log import AppLog
from projections.runner import ProjectionError, ProjectionRunner
from tests.projection_helpers import World, dump
from tests.test_processes import export

PLENTY = 1_073_741_823  # SQLite's default max_page_count


def until(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def fill_up(runner: ProjectionRunner) -> None:
    """The read model's file may not grow by one more page."""
    conn = runner._conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def make_room(runner: ProjectionRunner) -> None:
    runner._conn.execute(f"PRAGMA max_page_count = {PLENTY}")


def test_disk_full_is_recognised_through_wrappers() -> None:
    full = sqlite3.OperationalError("database or disk is full")
    try:
        try:
            raise full
        except sqlite3.OperationalError as e:
            raise ProjectionError("projecting events 1..2 failed") from e
    except ProjectionError as wrapped:
        assert disk_full(wrapped)
    assert disk_full(OSError(28, "No space left on device"))
    assert not disk_full(sqlite3.OperationalError("database is locked"))
    assert not disk_full(None)


def test_runner_waits_for_space_then_follows_again(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.prompt("a")
    runner = w.runner
    assert runner.catch_up(runner.log.head())
    fill_up(runner)
    runner.start()
    try:
        for k in range(30):
            w.prompt("b", f"prompt {k} " + "long text " * 150)
        assert until(lambda: runner.waiting_for_space), "the runner never hit the full disk"
        assert disk_full(runner.error)
        assert runner._thread is not None and runner._thread.is_alive()  # paused, not dead
        with pytest.raises(ProjectionError, match="waits for disk space"):
            runner.catch_up(runner.log.head(), timeout=0.2)
        head = runner.log.head()
        assert runner.position < head
        make_room(runner)
        assert until(lambda: runner.error is None), "the runner did not resume"
        assert not runner.waiting_for_space
        assert runner.catch_up(head, timeout=10)
        w.prompt("c", "after the disk had room again")
        assert runner.catch_up(runner.log.head(), timeout=5)
        got = dump(runner.readmodel.reader())
    finally:
        runner.close()
    with ProjectionRunner(AppLog(w.app), tmp_path / "fresh.sqlite") as fresh:
        fresh.run_once()
        assert got == dump(fresh.readmodel.reader())  # nothing lost, nothing twice


def test_a_failure_that_is_not_space_still_stops_the_runner(tmp_path: Path) -> None:
    w = World(tmp_path)
    runner = w.runner

    def broken(*args: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    runner.readmodel.projections[0].begin_batch = broken  # type: ignore[method-assign]
    runner.start()
    try:
        w.prompt("a")
        assert until(lambda: runner.error is not None)
        assert not runner.waiting_for_space
        assert until(lambda: runner._thread is not None and not runner._thread.is_alive())
    finally:
        with pytest.raises(ProjectionError):
            runner.close()


def test_process_loop_resumes_when_space_returns(tmp_path: Path) -> None:
    w = World(tmp_path, min_active_rankings_per_lang=1, p_activate_backlog_tree=0.0)
    runner = w.runner
    assert runner.catch_up(runner.log.head())
    fill_up(runner)
    runner.start()
    loop = ProcessLoop(w.app, runner, interval=0.02, rng=random.Random(1), timeout=0.2)
    try:
        tree = export("en", 1)
        assert import_trees(w.app, [tree], state=TreeState.BACKLOG_RANKING).imported == 1
        for k in range(30):
            w.prompt("b", f"prompt {k} " + "long text " * 150)
        assert until(lambda: runner.waiting_for_space)
        loop.start()
        assert until(lambda: loop.error is not None and disk_full(loop.error))
        tree_id = UUID(tree["message_tree_id"])
        assert w.app.get_tree(tree_id).state == TreeState.BACKLOG_RANKING  # no round ran
        make_room(runner)
        assert until(lambda: w.app.get_tree(tree_id).state == TreeState.RANKING), (
            "the backlog tree was not activated once space returned"
        )
        assert until(lambda: loop.error is None and runner.error is None)
    finally:
        loop.stop()
        runner.close()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_health_says_the_read_model_waits_for_space_then_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    from api.http.app import create_app
    from tests.http_helpers import ROOT, SMALL, Env, in_process, new_client_key

    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    monkeypatch.setenv("DATAENGINE_RATE_LIMIT", "false")
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), process_interval=0.05)
    async with in_process(app) as client:
        a = Env(client, await new_client_key(client))
        runner = app.state.service.runner
        fill_up(runner)
        for k in range(12):  # the log takes them; the read model cannot
            who = {"id": f"w{k}", "display_name": "W", "auth_method": "local"}
            await a.prompt(who, f"prompt {k} " + "long text " * 150, f"f{k}")
        r = await client.get("/health")
        assert r.status_code == 503 and "waits for disk space" in r.json()["reason"], r.text
        make_room(runner)
        deadline = time.monotonic() + 10
        while (r := await client.get("/health")).status_code != 200:
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.05)
        assert r.json()["lag"] == 0
        found = await a.get("/api/v1/frontend_messages/mf11")
        assert found.status_code == 200, found.text  # the last prompt is readable again
        assert app.state.service.processes.error is None or until(
            lambda: app.state.service.processes.error is None
        )
