"""A read model that is not the log's is never served: one ahead of the log (an older log
put back), from another store, or corrupt is set aside (kept) and rebuilt at start, with
one warning; /health answers 503 with the reason when the read model stops matching the
log; an audit.sqlite recording another store's log is set aside too."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from starlette.testclient import TestClient

from api.bootstrap import open_app
from api.http.app import create_app
from domain.model.actor import Actor
from projections.audit.live import AuditFollower
from projections.log import StoreLog
from projections.runner import ProjectionRunner
from projections.store import READMODEL_FILE
from tests.http_helpers import ROOT, SMALL


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
    runner = ProjectionRunner(StoreLog(folder / "events.sqlite"), folder / READMODEL_FILE)
    runner.run_once()
    return runner


def aside(folder: Path) -> list[Path]:
    found = folder.glob(f"{READMODEL_FILE}.set-aside-*")
    return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))


def test_own_read_model_is_kept(tmp_path: Path) -> None:
    head = write(tmp_path, 3, "a")
    follow(tmp_path).close()
    runner = follow(tmp_path)
    assert runner.set_aside is None and runner.position == head and not aside(tmp_path)
    runner.close()


def test_another_stores_read_model_is_set_aside(tmp_path: Path, caplog) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    head = write(ours, 3, "a")
    write(theirs, 2, "b")  # shorter: only its events tell it apart
    follow(theirs).close()
    shutil.copy(theirs / READMODEL_FILE, ours / READMODEL_FILE)
    with caplog.at_level(logging.WARNING, "dataengine.readmodel"):
        runner = follow(ours)
    assert runner.set_aside is not None and "another store's read model" in runner.set_aside
    assert len(aside(ours)) == 1 and runner.position == head
    assert sum("set aside" in r.getMessage() for r in caplog.records) == 1
    runner.close()


def test_read_model_ahead_of_a_restored_log(tmp_path: Path) -> None:
    write(tmp_path, 2, "a")
    backup = tmp_path / "backup.sqlite"
    shutil.copy(tmp_path / "events.sqlite", backup)
    write(tmp_path, 3, "b")
    follow(tmp_path).close()
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp_path / 'events.sqlite'}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, tmp_path / "events.sqlite")  # an older log put back
    runner = follow(tmp_path)
    assert runner.set_aside is not None and "ahead of the log" in runner.set_aside
    assert runner.position == StoreLog(tmp_path / "events.sqlite").head()
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
    assert runner.position == StoreLog(tmp_path / "events.sqlite").head()
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


def test_another_stores_audit_record_is_set_aside(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    write(ours, 2, "a")
    write(theirs, 2, "b")
    AuditFollower(theirs, theirs / "events.sqlite").close()  # records theirs
    shutil.copy(theirs / "audit.sqlite", ours / "audit.sqlite")
    follower = AuditFollower(ours, ours / "events.sqlite")
    follower.close()  # its last step records ours afresh
    assert follower.error is None and list(ours.glob("audit.sqlite.set-aside-*"))
    assert follower.position == StoreLog(ours / "events.sqlite").head()
