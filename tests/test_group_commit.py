"""Group commit on the store under test (SQLite, or PostgreSQL in the PostgreSQL pass):
shared commits, isolated failures, exact positions. Both recorders share the queue
(api.storage.group_commit) and give the same guarantees; only the synchronous pragma is
SQLite's own."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import (
    IntegrityError,
    OperationalError,
    PersistenceError,
    StoredEvent,
)

from api.bootstrap import open_app
from api.storage.events import GroupCommitSQLiteRecorder
from api.storage.group_commit import GroupCommit
from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.errors import ConfigError
from tests import log_helpers

CONFIG = TreeConfig(goal_tree_size=3, min_goal_tree_size=1)
LABELS = {"spam": 0.0, "lang_mismatch": 0.0, "quality": 0.5}


def _events(originator: UUID, *versions: int, state: Any = b"{}") -> list[StoredEvent]:
    return [
        StoredEvent(originator_id=originator, originator_version=v, topic="test:Event", state=state)
        for v in versions
    ]


def _rows(folder: Any) -> dict[tuple[str, int], int]:
    """(originator id hex, version) -> position, of every row of the folder's log."""
    return {(o, v): position for position, o, v, _, _ in log_helpers.rows(folder)}


@pytest.fixture
def app(tmp_path: Any) -> Any:
    app = open_app(tmp_path, CONFIG)
    yield app
    app.close()


def _in_threads(calls: list[Callable[[], Any]]) -> tuple[list[Any], list[threading.Thread]]:
    """Start each call on its own thread; results[i] is its return value or exception."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    return results, threads


def _one_batch(
    recorder: GroupCommit, monkeypatch: Any, requests: list[list[StoredEvent]]
) -> tuple[list[Any], list[int]]:
    """Hold a first commit open until every request has queued: they then share one batch."""
    release = threading.Event()
    sizes: list[int] = []
    commit = recorder._commit  # the store's commit of one batch (GroupCommit's hook)

    def held(batch: list[Any]) -> None:
        sizes.append(len(batch))
        if len(sizes) == 1:
            release.wait(10)
        commit(batch)

    monkeypatch.setattr(recorder, "_commit", held)
    _, first = _in_threads([lambda: recorder.insert_events(_events(uuid4(), 1))])
    deadline = time.monotonic() + 10
    while not sizes and time.monotonic() < deadline:
        time.sleep(0.001)
    results, threads = _in_threads([lambda r=r: recorder.insert_events(r) for r in requests])
    while len(recorder._queue) < len(requests) and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for t in first + threads:
        t.join(10)
    return results, sizes


def test_concurrent_commands_on_distinct_trees_all_land(app: Any, tmp_path: Any) -> None:
    client_id, _ = app.register_client(name="test")
    authors = [Actor(uuid4(), client_id) for _ in range(16)]
    reviewer = Actor(uuid4(), client_id)
    before = len(_rows(tmp_path))

    def work(author: Actor) -> list[tuple[UUID, int]]:
        positions = []
        for _ in range(5):
            tree = app.create_prompt(actor=author, text="What makes the sky blue at noon?")
            positions.append((tree.id, tree.position))
            labelled = app.submit_labels(
                actor=reviewer, tree_id=tree.id, message_id=tree.id, labels=LABELS
            )
            positions.append((tree.id, labelled.position))
        return positions

    results, threads = _in_threads([lambda a=a: work(a) for a in authors])
    for t in threads:
        t.join(60)
    assert not [r for r in results if isinstance(r, BaseException)]
    positions = [p for r in results for p in r]
    rows = _rows(tmp_path)
    assert len(positions) == 16 * 5 * 2
    # one event per command, plus the new prompt's message-index entry (saved first)
    assert len(rows) - before == 16 * 5 * 3
    by_rowid = {rowid: o for (o, _), rowid in rows.items()}
    assert len({p for _, p in positions}) == len(positions)
    assert all(by_rowid[p] == tree_id.hex for tree_id, p in positions)
    stats = app.recorder.stats
    assert stats["requests"] >= len(positions) and stats["commits"] <= stats["requests"]


def test_a_conflict_fails_only_its_own_request(app: Any, tmp_path: Any, monkeypatch: Any) -> None:
    taken = uuid4()
    app.recorder.insert_events(_events(taken, 1))
    a, c = uuid4(), uuid4()
    requests = [_events(a, 1, 2), _events(taken, 1), _events(c, 1), _events(taken, 2, 1)]
    results, sizes = _one_batch(app.recorder, monkeypatch, requests)

    assert sizes == [1, 4]  # the four requests shared one commit attempt
    assert isinstance(results[1], IntegrityError) and isinstance(results[3], IntegrityError)
    rows = _rows(tmp_path)
    assert results[0] == [rows[(a.hex, 1)], rows[(a.hex, 2)]]
    assert results[2] == [rows[(c.hex, 1)]]
    assert (taken.hex, 2) not in rows  # the failed request left none of its events
    assert len(rows) == 1 + 1 + 3


def test_a_bad_request_in_a_batch_is_rejected_whole(
    app: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    good, bad = uuid4(), uuid4()
    mixed = _events(bad, 1) + _events(bad, 2, state=object())  # the second cannot be stored
    results, sizes = _one_batch(app.recorder, monkeypatch, [_events(good, 1), mixed])

    assert sizes == [1, 2]
    assert isinstance(results[1], PersistenceError)
    rows = _rows(tmp_path)
    assert results[0] == [rows[(good.hex, 1)]]
    assert not [k for k in rows if k[0] == bad.hex]


def _broken_write(recorder: Any) -> Callable[[Any, Any], Any]:
    """The recorder's ``_write`` failing as its driver does when the disk fails. PostgreSQL
    fails after inserting the rows (its transaction must take them back); on SQLite one
    statement is its own transaction, so it fails before the statement."""
    if isinstance(recorder, GroupCommitSQLiteRecorder):

        def broken(cursor: Any, items: Any) -> Any:
            raise sqlite3.OperationalError("disk I/O error")

        return broken
    import psycopg

    write = recorder._write

    def broken_after(cursor: Any, rows: Any) -> Any:
        write(cursor, rows)
        raise psycopg.errors.IoError("could not write to file: Input/output error")

    return broken_after


def test_a_failed_commit_stores_nothing_and_the_next_one_works(
    app: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    recorder = app.recorder
    first, second = uuid4(), uuid4()
    with monkeypatch.context() as m, pytest.raises(OperationalError):
        m.setattr(recorder, "_write", _broken_write(recorder))
        recorder.insert_events(_events(first, 1, 2))
    assert recorder.insert_events(_events(second, 1)) == [_rows(tmp_path)[(second.hex, 1)]]
    assert not [k for k in _rows(tmp_path) if k[0] == first.hex]


def test_a_failed_shared_commit_stores_none_of_its_requests(
    app: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    recorder = app.recorder
    one, two = uuid4(), uuid4()
    with monkeypatch.context() as m:
        m.setattr(recorder, "_write", _broken_write(recorder))
        results, sizes = _one_batch(recorder, m, [_events(one, 1, 2), _events(two, 1)])
    assert sizes[:2] == [1, 2]  # (PostgreSQL's recorder then retries each on its own)
    assert all(isinstance(r, OperationalError) for r in results), results
    assert not [k for k in _rows(tmp_path) if k[0] in (one.hex, two.hex)]


def test_a_request_too_big_for_one_statement_is_atomic(
    app: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    recorder = app.recorder
    recorder.insert_events(_events(uuid4(), 1))  # opens the writer connection
    if isinstance(recorder, GroupCommitSQLiteRecorder):
        # SQLite binds at most _max_rows rows per INSERT: 3 makes the requests below span
        # several statements (one transaction). PostgreSQL's INSERT takes arrays, one
        # statement for any size: the same requests check its atomicity as they stand.
        monkeypatch.setattr(recorder, "_max_rows", 3)
    big, clash = uuid4(), uuid4()
    ids = recorder.insert_events(_events(big, *range(1, 11)))
    rows = _rows(tmp_path)
    assert ids == [rows[(big.hex, v)] for v in range(1, 11)]

    recorder.insert_events(_events(clash, 5))
    with pytest.raises(IntegrityError):  # the conflict is in the second statement (SQLite)
        recorder.insert_events(_events(clash, *range(1, 8)))
    assert [k for k in _rows(tmp_path) if k[0] == clash.hex] == [(clash.hex, 5)]


def test_a_stale_cache_retries_against_another_writer(tmp_path: Any) -> None:
    """Two processes on one file: the second one's stale copy conflicts, reloads, retries."""
    one, two = open_app(tmp_path, CONFIG), open_app(tmp_path, CONFIG)
    try:
        author, r1, r2 = (Actor(uuid4(), uuid4()) for _ in range(3))
        tree = one.create_prompt(actor=author, text="Name three rivers in Europe.")
        two.get_tree(tree.id)  # now cached in the second process
        one.submit_labels(actor=r1, tree_id=tree.id, message_id=tree.id, labels=LABELS)
        two.submit_labels(actor=r2, tree_id=tree.id, message_id=tree.id, labels=LABELS)
        reopened = open_app(tmp_path, CONFIG)
        root = reopened.get_tree(tree.id).root
        assert set(root.reviews) == {r1.user_id, r2.user_id}
        assert reopened.get_tree(tree.id).version == 3
        reopened.close()
    finally:
        one.close()
        two.close()


@pytest.mark.sqlite_only("SQLite's synchronous pragma; PostgreSQL's durability is its server's")
def test_synchronous_level_is_full_unless_asked(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("DATAENGINE_SYNCHRONOUS", raising=False)
    app = open_app(tmp_path)
    app.recorder.insert_events(_events(uuid4(), 1))
    assert app.recorder._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    app.close()
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "normal")
    app = open_app(tmp_path)
    app.recorder.insert_events(_events(uuid4(), 1))
    assert app.recorder._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    app.close()
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "off")
    with pytest.raises(ConfigError):
        open_app(tmp_path)
