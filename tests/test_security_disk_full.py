"""Disk full: a write that fails with SQLITE_FULL (PostgreSQL: SQLSTATE 53100) answers 507
with a JSON message (not 500) and records nothing. Simulated: this machine allows no small
tmpfs or loop mount for tests, so the event store's insert raises the error the store's
driver raises when the disk is full (sqlite3's, or psycopg's in the PostgreSQL pass)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from api.http.app import create_app
from api.storage.space import disk_full
from tests import log_helpers
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, in_process, new_client_key

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    monkeypatch.setenv("DATAENGINE_RATE_LIMIT", "false")
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=2)
    async with in_process(app) as client:
        yield app, Env(client, await new_client_key(client)), tmp_path


def count(folder: Path) -> int:
    return int(log_helpers.read(folder, "SELECT count(*) FROM stored_events")[0][0])


def full_disk_error(folder: Path) -> Exception:
    """What the store's driver raises when a write finds the disk full."""
    if log_helpers.on_postgres(folder):
        import psycopg

        return psycopg.errors.DiskFull(
            'could not extend file "base/16384/16385": No space left on device'
        )
    return sqlite3.OperationalError("database or disk is full")


def test_postgresql_disk_full_is_recognised_by_its_sqlstate() -> None:
    psycopg = pytest.importorskip("psycopg")
    # the server's messages may be in another language (lc_messages): the SQLSTATE is not
    assert disk_full(psycopg.errors.DiskFull("konnte Datei nicht erweitern"))
    assert not disk_full(psycopg.errors.UniqueViolation("duplicate key value"))


async def test_a_full_disk_answers_507_and_recovers(env: Any, monkeypatch) -> None:
    app, a, folder = env
    engine = app.state.service.app
    before = count(folder)

    def full(*args: Any, **kwargs: Any) -> Any:
        raise full_disk_error(folder)

    with monkeypatch.context() as m:
        m.setattr(engine.events, "put", full)
        r = await a.post(
            "/api/v1/tasks/",
            {
                "type": "initial_prompt",
                "user": {"id": "u1", "display_name": "U", "auth_method": "local"},
            },
        )
        assert r.status_code == 507, r.text
        assert "storage is full" in r.json()["message"] and r.json()["error_code"] == 0
    assert count(folder) == before
    # space is back: the same request goes through
    await a.task({"id": "u1", "display_name": "U", "auth_method": "local"}, "initial_prompt")
    assert count(folder) > before
