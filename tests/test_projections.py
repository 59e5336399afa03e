from __future__ import annotations

import sqlite3
import time
from uuid import UUID

import pytest

from api.bootstrap import open_app
from api.storage.logdb import log_location
from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.topics import MOVED_MODULES
from domain.service.simulator import run_simulation
from projections import log_reader
from projections.datasets.build import replay_trees
from projections.log import SQLiteLog
from projections.messages import MessagesProjection
from projections.rebuild import rebuild
from projections.runner import ProjectionError, ProjectionRunner
from projections.store import default_projections
from projections.users import UsersProjection
from tests import log_helpers
from tests.projection_helpers import World, dump
from tests.store_helpers import copy_store

SMALL = TreeConfig(goal_tree_size=3, min_goal_tree_size=1)


@pytest.fixture
def simulated(tmp_path):
    """A SQLite store filled by the simulator, followed live by a runner thread."""
    app = open_app(tmp_path, SMALL)
    runner = ProjectionRunner(
        SQLiteLog(log_location(tmp_path)), tmp_path / "live.sqlite", batch_size=64
    ).start()
    run_simulation(app, runner, trees=3, users=10, seed=7)
    runner.stop()
    yield tmp_path, runner
    runner.close()


def test_live_read_model_equals_rebuild(simulated):
    folder, runner = simulated
    log = SQLiteLog(log_location(folder))
    assert runner.position == log.head() > 100
    events, _ = rebuild(log, folder / "rebuilt.sqlite", batch_size=500)
    assert events == log.head()
    # The indexes a rebuild creates only at its end are there (before anyone opens it).
    indexes = "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
    fresh = sqlite3.connect(folder / "rebuilt.sqlite")
    assert (
        fresh.execute(indexes).fetchall() == runner.readmodel.reader().execute(indexes).fetchall()
    )
    fresh.close()
    rebuilt = ProjectionRunner(log, folder / "rebuilt.sqlite")
    live, again = dump(runner.readmodel.reader()), dump(rebuilt.readmodel.reader())
    assert set(live) == set(again) >= {"trees", "messages", "labels", "rankings", "tasks", "users"}
    for table in live:
        assert live[table] == again[table], table
    states = dict(
        runner.readmodel.reader().execute("SELECT state, count(*) FROM trees GROUP BY state")
    )
    assert states["ready_for_export"] >= 3


def test_rows_match_the_aggregates(simulated):
    folder, runner = simulated
    app = open_app(folder, SMALL)
    conn = runner.readmodel.reader()
    for tree_id, state, size in conn.execute("SELECT tree_id, state, size FROM trees").fetchall():
        tree = app.get_tree(UUID(tree_id))
        assert state == tree.state.value
        assert size == sum(1 for m in tree.messages.values() if m.review_result and not m.deleted)
        for m in tree.messages.values():
            row = conn.execute(
                "SELECT review_count, review_result, ranking_count, rank, children_count, deleted"
                " FROM messages WHERE message_id = ?",
                (str(m.id),),
            ).fetchone()
            expected = (
                m.review_count,
                None if m.review_result is None else int(m.review_result),
                m.ranking_count,
                m.rank,
                len(m.children),
                int(m.deleted),
            )
            assert row == expected


class Failing(MessagesProjection):
    """Crashes on the n-th label event it sees."""

    def __init__(self, fail_at: int):
        self.left = fail_at

    def on_labels(self, c, e):
        self.left -= 1
        if self.left == 0:
            raise RuntimeError("crash in a handler")
        super().on_labels(c, e)


def test_crash_mid_batch_resumes_to_the_same_result(simulated):
    folder, runner = simulated
    log = SQLiteLog(log_location(folder))
    path = folder / "crashy.sqlite"
    crashing = ProjectionRunner(log, path, [Failing(40), *default_projections()[1:]], batch_size=50)
    with pytest.raises(ProjectionError):
        crashing.run_once()
    stopped_at = crashing.position
    assert 0 < stopped_at < log.head()
    assert stopped_at % 50 == 0  # the failing batch was rolled back as a whole
    positions = crashing.readmodel.positions()
    assert set(positions.values()) == {stopped_at}
    # Only events up to the tracked position are in the tables.
    conn = crashing.readmodel.reader()
    projected_labels = conn.execute("SELECT count(*) FROM labels").fetchone()[0]
    crashing.close()

    resumed = ProjectionRunner(log, path, default_projections(), batch_size=50)
    assert resumed.position == stopped_at
    assert resumed.run_once() == log.head() - stopped_at
    assert resumed.run_once() == 0  # exactly once: nothing left, nothing applied twice
    assert dump(resumed.readmodel.reader()) == dump(runner.readmodel.reader())
    assert (
        projected_labels
        < resumed.readmodel.reader().execute("SELECT count(*) FROM labels").fetchone()[0]
    )
    resumed.close()


def test_two_runners_on_one_file_apply_each_event_once(simulated):
    """The server's runner and a CLI command's on the same read model, taking turns: each
    skips what the other applied and drops the rows it had cached, so the file ends as
    one runner would have left it."""
    folder, runner = simulated
    head = SQLiteLog(log_location(folder)).head()
    path = folder / "shared.sqlite"
    pair = [
        ProjectionRunner(SQLiteLog(log_location(folder)), path, batch_size=40) for _ in range(2)
    ]
    for k in range(1, 7):
        pair[k % 2].run_once(until=head * k // 6)
    assert [r.run_once() for r in pair] == [0, 0]
    assert [r.position for r in pair] == [head, head]
    assert dump(pair[0].readmodel.reader()) == dump(runner.readmodel.reader())
    for r in pair:
        r.close()


def test_a_new_projection_catches_up_while_the_others_skip(tmp_path):
    world = World(tmp_path)
    tree = world.growing_tree()
    world.reply("e", tree, tree)
    path = tmp_path / "partial.sqlite"
    first = ProjectionRunner(world.runner.log, path, [UsersProjection()])
    first.run_once()
    first.close()
    both = ProjectionRunner(world.runner.log, path, default_projections())
    assert both.position == 0
    both.run_once()
    assert dump(both.readmodel.reader()) == dump(world.conn)


def test_live_following_has_low_lag(tmp_path):
    app = open_app(tmp_path, SMALL)
    client, _ = app.register_client(name="lag")
    runner = ProjectionRunner(
        SQLiteLog(log_location(tmp_path)), tmp_path / "rm.sqlite", poll_interval=0.005
    ).start()
    lags = []
    try:
        for i in range(20):
            started = time.perf_counter()
            position = app.create_prompt(actor=Actor(None, client), text=f"prompt {i}").position
            assert runner.catch_up(position, timeout=2.0)
            lags.append(time.perf_counter() - started)
    finally:
        runner.close()
    lags.sort()
    assert lags[len(lags) // 2] < 0.05
    conn = runner.readmodel.connect()
    assert conn.execute("SELECT count(*) FROM trees").fetchone()[0] == 20


def test_events_under_their_current_topics_project_the_same(
    simulated, tmp_path, request, monkeypatch
):
    """A log holding the events under their classes' current module path (domain.model.tree:…
    instead of the stored domain.tree:…) gives the same read models, trees and dataset trees."""
    folder, runner = simulated
    stored = log_location(folder)
    moved_folder = tmp_path / "moved"
    copy_store(folder, moved_folder, request, monkeypatch)  # the log's WAL included
    moved = log_location(moved_folder)
    for old, new in MOVED_MODULES.items():
        log_helpers.write(
            moved,
            "UPDATE stored_events SET topic = ? || substr(topic, ?) WHERE topic LIKE ?",
            (new + ":", len(old) + 2, old + ":%"),
        )
    left = log_helpers.read(
        moved, "SELECT count(*) FROM stored_events WHERE topic NOT LIKE 'domain.model.%'"
    )[0][0]
    assert left == 0
    again = ProjectionRunner(SQLiteLog(moved), moved_folder / "rm.sqlite")
    again.run_once()
    assert dump(again.readmodel.reader()) == dump(runner.readmodel.reader())
    again.close()
    head = log_reader.log_position(stored)
    trees = log_reader.count_trees(stored, head)
    assert trees > 0 and log_reader.count_trees(moved, head) == trees
    assert [t.as_dict() for t in log_reader.iter_trees(moved, head)] == [
        t.as_dict() for t in log_reader.iter_trees(stored, head)
    ]
    ready = [(t.id, t.state) for t in replay_trees(stored, head)]
    assert ready and [(t.id, t.state) for t in replay_trees(moved, head)] == ready
