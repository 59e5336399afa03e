"""The PostgreSQL event store: a log copied from SQLite reads the same on both stores
(positions, audit digest, read models, trees, datasets), and the application writes on
with gapless positions, shared commits, and version conflicts retried across processes."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from api.bootstrap import open_app
from api.cli import main
from api.storage.events import EVENTS_FILE
from api.storage.logdb import connect_log
from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.service.simulator import run_simulation
from projections import log_reader
from projections.audit.record import AUDIT_FILE, AuditStore, open_log, record
from projections.audit.verify import verify
from projections.datasets.build import build
from projections.datasets.rows import BuildOptions
from projections.log import StoreLog
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from tests.projection_helpers import dump

SMALL = TreeConfig(goal_tree_size=3, min_goal_tree_size=1)


@pytest.fixture(scope="module")
def sqlite_log(tmp_path_factory: Any) -> Path:
    """A simulated SQLite store (with its live read model), shared by the module's tests."""
    folder = tmp_path_factory.mktemp("sqlite")
    app = open_app(folder, SMALL)
    runner = ProjectionRunner(StoreLog(folder / EVENTS_FILE), folder / "live.sqlite").start()
    run_simulation(app, runner, trees=3, users=10, seed=7)
    runner.close()
    app.close()
    return folder


@pytest.fixture
def copied(sqlite_log: Path, pg_url: str, capsys: Any) -> str:
    assert main(["store", "copy", "--from", str(sqlite_log), "--to", pg_url]) == 0
    out = capsys.readouterr().out
    assert "equal on both stores" in out
    return pg_url


def _digest_and_verify(location: Any, folder: Path) -> tuple[int, bytes]:
    log, store = open_log(location), AuditStore(folder / AUDIT_FILE)
    head, digest = record(log, store)[:2]
    report = verify(log, store)
    assert report.intact and report.digest == digest, report
    store.close()
    return head, digest


def test_copy_keeps_positions_and_the_audit_digest(
    sqlite_log: Path, copied: str, tmp_path: Path
) -> None:
    sqlite_rows = connect_log(sqlite_log / EVENTS_FILE).execute(
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events"
        " ORDER BY rowid"
    )
    pg_rows = connect_log(copied).execute(
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events"
        " ORDER BY rowid"
    )
    assert sqlite_rows.fetchall() == pg_rows.fetchall()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    on_sqlite = _digest_and_verify(sqlite_log / EVENTS_FILE, tmp_path / "a")
    on_pg = _digest_and_verify(copied, tmp_path / "b")
    assert on_sqlite == on_pg and on_pg[0] > 100


def test_copy_refuses_a_store_that_holds_events(sqlite_log: Path, copied: str, capsys: Any) -> None:
    assert main(["store", "copy", "--from", str(sqlite_log), "--to", copied]) == 2
    assert "already holds" in capsys.readouterr().err
    assert main(["store", "copy", "--from", str(sqlite_log), "--to", "sqlite:///x"]) == 2


def test_read_models_trees_and_datasets_equal_on_both_stores(
    sqlite_log: Path, copied: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebuilt = {}
    for name, location in (("sqlite", sqlite_log / EVENTS_FILE), ("pg", copied)):
        log = StoreLog(location)
        rebuild(log, tmp_path / f"{name}.sqlite", batch_size=100, workers=1)
        runner = ProjectionRunner(log, tmp_path / f"{name}.sqlite")
        rebuilt[name] = dump(runner.readmodel.reader())
        runner.close()
    assert rebuilt["sqlite"] == rebuilt["pg"]
    head = log_reader.log_position(copied)
    trees = {
        name: [(t.id, t.version) for t in log_reader.iter_trees(location, head)]
        for name, location in (("sqlite", sqlite_log / EVENTS_FILE), ("pg", copied))
    }
    assert trees["sqlite"] == trees["pg"] and len(trees["pg"]) >= 3
    # a dataset build from each store: the same files, the same audit digest
    outputs = {}
    for name, store in (("sqlite", None), ("pg", copied)):
        folder = tmp_path / f"data-{name}"
        folder.mkdir()
        if store:
            monkeypatch.setenv("DATAENGINE_STORE", store)
        else:
            monkeypatch.delenv("DATAENGINE_STORE", raising=False)
            with (
                sqlite3.connect(sqlite_log / EVENTS_FILE) as source,
                sqlite3.connect(folder / EVENTS_FILE) as target,
            ):
                source.backup(target)  # the log's WAL included
        manifest = build(folder, tmp_path / f"ds-{name}", BuildOptions(), source="replay")
        outputs[name] = (
            manifest["audit"],
            {
                str(p.relative_to(tmp_path / f"ds-{name}")): hashlib.sha256(
                    p.read_bytes()
                ).hexdigest()
                for p in sorted((tmp_path / f"ds-{name}").rglob("*"))
                if p.is_file()
            },
        )
    assert outputs["sqlite"] == outputs["pg"]


def test_the_app_writes_on_after_the_copy(copied: str, tmp_path: Path) -> None:
    head = log_reader.log_position(copied)
    app = open_app(tmp_path, SMALL, store=copied)
    try:
        client, _ = app.register_client(name="after copy")
        done = app.create_prompt(actor=Actor(None, client), text="a prompt after the copy")
        assert done.position is not None and done.position > head
        positions = [
            r[0] for r in connect_log(copied).execute("SELECT rowid FROM stored_events ORDER BY 1")
        ]
        assert positions == list(range(1, positions[-1] + 1))  # gapless
    finally:
        app.close()


def _events(originator: Any, *versions: int) -> list[StoredEvent]:
    return [
        StoredEvent(originator_id=originator, originator_version=v, topic="t:E", state=b"{}")
        for v in versions
    ]


def test_a_conflict_fails_only_its_own_request_and_burns_no_position(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_app(tmp_path, SMALL, store=pg_url)
    recorder = app.recorder
    try:
        taken = uuid4()
        assert recorder.insert_events(_events(taken, 1)) is not None
        release, entered = threading.Event(), threading.Event()
        write = recorder._write
        calls: list[int] = []

        def held(cursor: Any, rows: list[Any]) -> list[int]:
            calls.append(len(rows))
            if len(calls) == 1:  # the first commit waits until the others have queued
                entered.set()
                release.wait(5)
            return write(cursor, rows)

        monkeypatch.setattr(recorder, "_write", held)
        requests = [_events(uuid4(), 1), _events(taken, 1), _events(uuid4(), 1, 2)]
        results: list[Any] = [None] * 4

        def run(i: int, events: list[StoredEvent]) -> None:
            try:
                results[i] = recorder.insert_events(events)
            except Exception as e:  # noqa: BLE001 - inspected below
                results[i] = e

        first = threading.Thread(target=run, args=(0, _events(uuid4(), 1)))
        first.start()
        assert entered.wait(5)
        others = [threading.Thread(target=run, args=(i + 1, r)) for i, r in enumerate(requests)]
        for t in others:
            t.start()
        while recorder._queue.__len__() < len(requests):
            threading.Event().wait(0.005)
        release.set()
        for t in [first, *others]:
            t.join(10)
        assert isinstance(results[2], IntegrityError)
        stored = [r for i, r in enumerate(results) if i != 2]
        assert all(isinstance(r, list) for r in stored), results
        assert sorted(p for r in stored for p in r) == [2, 3, 4, 5]  # none burnt by the conflict
        assert recorder.stats["max_batch"] == 3  # the three queued requests shared a commit
    finally:
        app.close()


def test_two_processes_conflicts_are_retried_never_lost_nor_duplicated(
    pg_url: str, tmp_path: Path
) -> None:
    """Two applications on one store (as two server processes): each caches the tree, so
    every write of one makes the other's next save conflict; the command retries."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    apps = [open_app(tmp_path / name, SMALL, store=pg_url) for name in ("a", "b")]
    try:
        client, _ = apps[0].register_client(name="two")
        users = [
            apps[0].ensure_user(client_id=client, auth_method="local", username=f"u{i}")
            for i in range(9)
        ]
        actors = [Actor(u, client) for u in users]
        done = apps[0].create_prompt(actor=actors[0], text="a shared tree")
        tree_id = done.id
        apps[1].get_tree(tree_id)  # both processes now hold the tree in their caches
        errors: list[BaseException] = []

        def emoji(i: int) -> None:
            try:
                app = apps[i % 2]
                app.toggle_emoji(
                    tree_id=tree_id, message_id=tree_id, emoji="+1", actor=actors[i + 1], op="add"
                )
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=emoji, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        rows = connect_log(pg_url).execute(
            "SELECT originator_version, topic FROM stored_events WHERE originator_id = ?",
            (tree_id.hex,),
        )
        versions, topics = zip(*sorted(rows))
        assert list(versions) == list(range(1, len(versions) + 1))
        emojis = [t for t in topics if "Emoji" in t]
        assert len(emojis) == 8, topics  # every emoji once: none lost, none twice
        fresh = open_app(tmp_path / "c", SMALL, store=pg_url)
        try:
            assert fresh.get_tree(tree_id).version == versions[-1]
        finally:
            fresh.close()
    finally:
        for app in apps:
            app.close()


def test_threads_sharing_a_log_connection_see_every_row(copied: str) -> None:
    """The runner's thread scans while another thread asks for the head on the same
    connection (as the process loop does): the scan still hands out every row once."""
    log = connect_log(copied)
    head = log.execute("SELECT max(rowid) FROM stored_events").fetchone()[0]
    stop = threading.Event()

    def heads() -> None:
        while not stop.is_set():
            assert log.execute("SELECT max(rowid) FROM stored_events").fetchone()[0] == head

    other = threading.Thread(target=heads)
    other.start()
    try:
        for _ in range(5):
            cursor = log.execute("SELECT rowid FROM stored_events ORDER BY rowid")
            seen: list[int] = []
            while batch := cursor.fetchmany(7):
                seen += [p for (p,) in batch]
            assert seen == list(range(1, head + 1))
    finally:
        stop.set()
        other.join()
        log.close()


@pytest.mark.parametrize(
    "command", [["export", "oa", "--out", "out.jsonl"], ["clients", "create", "--name", "x"]]
)
def test_an_unreachable_store_is_a_message_and_exit_2(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Any command on a PostgreSQL store that nothing answers: one line naming the store
    (without its password) and exit 2, not a traceback."""
    pytest.importorskip("psycopg")
    monkeypatch.setenv("DATAENGINE_STORE", "postgresql://de:secret@127.0.0.1:1/x?schema=s")
    monkeypatch.setenv("POSTGRES_CONNECT_TIMEOUT", "1")
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the event store postgresql://de:***@127.0.0.1:1/")
    assert "secret" not in err and "Traceback" not in err
