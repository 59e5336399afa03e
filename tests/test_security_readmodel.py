"""A read model that is not the log's is never served: one ahead of the log (an older log
put back), from another store, or corrupt is set aside (kept) and rebuilt at start, with
one warning; /health answers 503 with the reason when the read model stops matching the
log; an audit.sqlite recording another store's log is set aside too.

On either store: the log is ``log_location(folder)`` (the folder's events.sqlite, or the
PostgreSQL store in use); "another store" is then another folder's file, or another schema
(tests/store_helpers)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.bootstrap import open_app
from api.http.app import create_app
from api.storage.copy import copy_log
from api.storage.logdb import Location, log_location
from domain.model.actor import Actor
from projections.audit.live import AuditFollower
from projections.log import StoreLog
from projections.runner import ProjectionRunner
from projections.store import READMODEL_FILE
from tests.http_helpers import ROOT, SMALL
from tests.store_helpers import new_store, use_store


def write(folder: Path, prompts: int, tag: str) -> int:
    """``prompts`` new trees in the store in ``folder``; the log's head."""
    app = open_app(folder, SMALL)
    try:
        client_id, _ = app.register_client(name=f"client-{tag}")
        for i in range(prompts):
            user = app.ensure_user(client_id=client_id, auth_method="local", username=f"{tag}{i}")
            app.create_prompt(actor=Actor(user, client_id), text=f"{tag} prompt {i}")
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


def follow(folder: Path) -> ProjectionRunner:
    runner = ProjectionRunner(StoreLog(log_location(folder)), folder / READMODEL_FILE)
    runner.run_once()
    return runner


def log_head(folder: Path) -> int:
    log = StoreLog(log_location(folder))
    try:
        return log.head()
    finally:
        log.close()


def elsewhere(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, folder: Path, prompts: int
) -> None:
    """Another store's log (in ``folder``, or a schema of its own) and its read model in
    ``folder``; the store in use is unchanged afterwards."""
    with monkeypatch.context() as m:
        use_store(m, new_store(request))
        write(folder, prompts, "b")
        follow(folder).close()
        AuditFollower(folder, log_location(folder)).close()  # records it


def backup(folder: Path, request: pytest.FixtureRequest) -> Location:
    """A copy of the folder's log as it stands now."""
    url = new_store(request)
    if url is not None:
        copy_log(log_location(folder), url)
        return url
    copy = folder / "backup.sqlite"
    shutil.copy(folder / "events.sqlite", copy)
    return copy


def put_back(folder: Path, copy: Location, monkeypatch: pytest.MonkeyPatch) -> None:
    """The older copy of the log becomes the folder's log again: the file copied back,
    or the store pointed at the copy (DATAENGINE_STORE)."""
    if isinstance(copy, str):
        use_store(monkeypatch, copy)
        return
    for suffix in ("-wal", "-shm"):
        Path(f"{folder / 'events.sqlite'}{suffix}").unlink(missing_ok=True)
    shutil.copy(copy, folder / "events.sqlite")


def aside(folder: Path) -> list[Path]:
    found = folder.glob(f"{READMODEL_FILE}.set-aside-*")
    return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))


def test_own_read_model_is_kept(tmp_path: Path) -> None:
    head = write(tmp_path, 3, "a")
    follow(tmp_path).close()
    runner = follow(tmp_path)
    assert runner.set_aside is None and runner.position == head and not aside(tmp_path)
    runner.close()


def test_another_stores_read_model_is_set_aside(
    tmp_path: Path, caplog, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    head = write(ours, 3, "a")
    elsewhere(request, monkeypatch, theirs, 2)  # shorter: only its events tell it apart
    shutil.copy(theirs / READMODEL_FILE, ours / READMODEL_FILE)
    with caplog.at_level(logging.WARNING, "dataengine.readmodel"):
        runner = follow(ours)
    assert runner.set_aside is not None and "another store's read model" in runner.set_aside
    assert len(aside(ours)) == 1 and runner.position == head
    assert sum("set aside" in r.getMessage() for r in caplog.records) == 1
    runner.close()


def test_read_model_ahead_of_a_restored_log(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, 2, "a")
    older = backup(tmp_path, request)
    write(tmp_path, 3, "b")
    follow(tmp_path).close()
    put_back(tmp_path, older, monkeypatch)  # an older log put back
    runner = follow(tmp_path)
    assert runner.set_aside is not None and "ahead of the log" in runner.set_aside
    assert runner.position == log_head(tmp_path)
    runner.close()


def test_corrupt_read_model_is_set_aside(tmp_path: Path) -> None:
    write(tmp_path, 3, "a")
    follow(tmp_path).close()
    path = tmp_path / READMODEL_FILE
    data = bytearray(path.read_bytes())
    data[4096 : 4096 + 64] = b"\xff" * 64  # a page's header: quick_check fails
    path.write_bytes(bytes(data))
    runner = follow(tmp_path)
    assert runner.set_aside is not None and aside(tmp_path)
    assert runner.position == log_head(tmp_path)
    runner.close()


def test_health_reports_a_read_model_that_stops_matching(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    write(tmp_path, 2, "a")
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), process_interval=0)
    with TestClient(app) as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["reason"] is None
        assert health.json()["lag"] == 0
        import sqlite3

        with sqlite3.connect(tmp_path / READMODEL_FILE) as conn:  # as if from elsewhere
            conn.execute("UPDATE log_identity SET fingerprint = 'x' WHERE mark = 'head'")
        health = client.get("/health")
        assert health.status_code == 503, health.text
        assert "not the one it projected" in health.json()["reason"]


def test_another_stores_audit_record_is_set_aside(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    write(ours, 2, "a")
    elsewhere(request, monkeypatch, theirs, 2)  # its audit.sqlite records theirs
    shutil.copy(theirs / "audit.sqlite", ours / "audit.sqlite")
    follower = AuditFollower(ours, log_location(ours))
    follower.close()  # its last step records ours afresh
    assert follower.error is None and list(ours.glob("audit.sqlite.set-aside-*"))
    assert follower.position == log_head(ours)
