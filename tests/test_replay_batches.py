"""Fast replay must not change what the read models say: batch boundaries, views of the
stored JSON instead of domain events, write-back caches, running tree sizes, one labels
row per submission, readers of other projections' rows, and the rebuild's file swap."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from uuid import UUID, uuid5

import pytest

from api.bootstrap import open_app
from api.storage.logdb import log_location
from domain.model.actor import SYSTEM
from domain.model.config import TreeConfig
from domain.model.tree import ConversationTree as T
from domain.service.oa_import import import_trees
from domain.service.simulator import run_simulation
from projections.base import Projection, handles
from projections.log import AppLog, SQLiteLog
from projections.messages import MessagesProjection
from projections.rebuild import rebuild, split
from projections.runner import ProjectionError, ProjectionRunner
from projections.store import default_projections
from projections.trees import TreesProjection
from projections.users import UsersProjection
from tests.projection_helpers import SPAM, World, dump


def core():
    return [MessagesProjection(), TreesProjection(), UsersProjection()]


def busy_world(tmp_path) -> tuple[World, UUID, dict[str, UUID]]:
    """One tree through everything the messages and trees read models record."""
    w = World(tmp_path, max_children_count=5, goal_tree_size=4)
    app = w.app
    tree = w.growing_tree("a", "bcd")
    ids = {
        "a1": w.reply("b", tree, tree, "first answer"),
        "a2": w.reply("c", tree, tree, "second answer"),
        "a3": w.reply("d", tree, tree, "asdf spam answer"),
    }
    w.label("cde", tree, ids["a1"])
    w.label("bde", tree, ids["a2"], {"spam": 0.0, "lang_mismatch": 0.0, "quality": 0.25})
    w.label("efg", tree, ids["a3"], SPAM)  # rejected
    for labels, kind in (
        ({"quality": 0.5}, "free"),
        ({"quality": 1.0, "humor": 0.5}, "free"),
        ({"pii": 1.0}, "report"),
    ):
        app.submit_labels(
            actor=w.users["h"], tree_id=tree, message_id=ids["a1"], labels=labels, kind=kind
        )
    for emoji in ("+1", "+1", "-1"):  # on, off, on
        app.toggle_emoji(tree_id=tree, message_id=ids["a2"], emoji=emoji, actor=w.users["e"])
    app.edit_message(
        tree_id=tree, message_id=ids["a2"], text="second answer, edited", actor=w.users["c"]
    )
    app.halt_tree(tree_id=tree, actor=SYSTEM)
    app.resume_tree(tree_id=tree, actor=SYSTEM)
    ids["a4"] = w.reply("e", tree, tree, "fourth answer")
    app.delete_message(tree_id=tree, message_id=ids["a4"], actor=SYSTEM)
    app.undelete_message(tree_id=tree, message_id=ids["a4"], actor=SYSTEM)
    app.delete_message(tree_id=tree, message_id=ids["a4"], actor=SYSTEM)
    ids["a5"] = w.reply("f", tree, tree, "fifth answer")
    w.label("bcd", tree, ids["a5"])  # goal size 4 reached: ranking
    for ranker in "gh":  # two rankings complete the parent: scored, ready for export
        app.submit_ranking(
            actor=w.users[ranker],
            tree_id=tree,
            parent_id=tree,
            ranked_message_ids=[ids["a2"], ids["a5"], ids["a1"]],
        )
    return w, tree, ids


def project(log, path, batch_size) -> dict[str, list[tuple]]:
    runner = ProjectionRunner(log, path, core(), batch_size=batch_size)
    runner.run_once()
    tables = dump(runner.readmodel.reader())
    runner.close()
    return tables


def test_batch_boundaries_do_not_change_the_tables(tmp_path):
    w, tree, _ = busy_world(tmp_path)
    state = w.conn.execute("SELECT state FROM trees WHERE tree_id = ?", (str(tree),)).fetchone()
    assert state == ("ready_for_export",)
    log = AppLog(w.app)
    one = project(log, tmp_path / "one.sqlite", 1)
    assert project(log, tmp_path / "three.sqlite", 3) == one
    assert project(log, tmp_path / "all.sqlite", 10_000) == one


def test_running_tree_sizes_equal_a_recount(tmp_path):
    w, tree, ids = busy_world(tmp_path)
    conn = w.conn
    recount = conn.execute(
        "SELECT sum(review_result = 1 AND deleted = 0),"
        " sum(deleted = 0 AND (review_result = 1 OR (review_result IS NULL"
        "     AND parent_id IS NOT NULL))), count(*)"
        " FROM messages WHERE tree_id = ?",
        (str(tree),),
    ).fetchone()
    row = conn.execute(
        "SELECT size, grow_size, message_count FROM trees WHERE tree_id = ?", (str(tree),)
    ).fetchone()
    assert row == recount == (4, 4, 6)
    halted = conn.execute("SELECT halted_from FROM trees").fetchone()
    assert halted == (None,)  # resumed since


def test_labels_are_one_row_per_submission(tmp_path):
    w, tree, ids = busy_world(tmp_path)
    conn = w.conn
    rows = conn.execute(
        "SELECT user_id, kind, labels FROM labels WHERE message_id = ? ORDER BY user_id, kind",
        (str(ids["a1"]),),
    ).fetchall()
    h = str(w.uid("h"))
    # h's second free submission replaced the first; the report then replaced both.
    assert [(u, k) for u, k, _ in rows if u == h] == [(h, "report")]
    assert len([r for r in rows if r[1] == "task"]) == 3
    count, reviewers = conn.execute(
        "SELECT review_count, reviewers FROM messages WHERE message_id = ?", (str(ids["a1"]),)
    ).fetchone()
    # c, d and e reviewed a1 with a task; h's free labels and report are no review.
    assert count == 3
    assert sorted(reviewers.split(",")[:-1]) == sorted(str(w.uid(u)) for u in "cde")
    emojis = conn.execute(
        "SELECT emojis FROM messages WHERE message_id = ?", (str(ids["a2"]),)
    ).fetchone()
    assert json.loads(emojis[0]) == {"-1": 1}


def textual(value):
    """What a view holds for a domain event's value: ids as text, everywhere."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return type(value)(textual(v) for v in value)
    if isinstance(value, dict):
        return {k: textual(v) for k, v in value.items()}
    return value


def test_views_carry_the_domain_events_fields(tmp_path):
    w, _, _ = busy_world(tmp_path)
    log = AppLog(w.app)
    rows = log.read(0, 10_000)
    checked = set()
    for row in rows:
        event = log.decode(row)
        view = log.view_decoder(type(event))(row)
        for f in dataclasses.fields(event):
            value = getattr(event, f.name)
            assert getattr(view, f.name) == textual(value), (type(event).__name__, f.name)
        checked.add(type(event).__name__)
    assert {
        "TreeStarted",
        "ReplyAdded",
        "LabelsSubmitted",
        "RankingSubmitted",
        "TreeScored",
        "TreeHalted",
        "MessageDeleted",
        "EmojiToggled",
        "Registered",
    } <= checked


class RepliesSeen(Projection):
    """Reads the messages projection's rows in its handler: sees them as of its event."""

    name = "replies_seen"
    tables = ("replies_seen",)
    ddl = (
        "CREATE TABLE IF NOT EXISTS replies_seen (message_id TEXT PRIMARY KEY,"
        " siblings INTEGER NOT NULL)",
    )
    reads_others = True

    @handles(T.ReplyAdded)
    def on_reply(self, c: sqlite3.Cursor, e) -> None:
        (siblings,) = c.execute(
            "SELECT children_count FROM messages WHERE message_id = ?", (str(e.parent_id),)
        ).fetchone()
        c.execute("INSERT INTO replies_seen VALUES (?, ?)", (str(e.message_id), siblings))


def test_a_reader_of_other_rows_sees_them_as_of_its_event(tmp_path):
    w, tree, ids = busy_world(tmp_path)
    log = AppLog(w.app)
    seen = []
    for batch_size, name in ((1, "one"), (10_000, "all")):
        runner = ProjectionRunner(
            log, tmp_path / f"{name}-seen.sqlite", core() + [RepliesSeen()], batch_size=batch_size
        )
        runner.run_once()
        seen.append(dict(runner.readmodel.reader().execute("SELECT * FROM replies_seen")))
        runner.close()
    assert seen[0] == seen[1]
    assert [seen[0][str(ids[k])] for k in ("a1", "a2", "a3", "a4", "a5")] == [1, 2, 3, 4, 5]


def test_imported_ranks_are_projected(tmp_path):
    app = open_app(tmp_path, TreeConfig())
    root, first, second = (uuid5(UUID(int=0), name) for name in ("root", "first", "second"))

    def node(message_id, role, text, rank=None, replies=()):
        return {
            "message_id": str(message_id),
            "role": role,
            "text": text,
            "lang": "en",
            "review_count": 3,
            "review_result": True,
            "rank": rank,
            "replies": list(replies),
        }

    export = {
        "message_tree_id": str(root),
        "tree_state": "ready_for_export",
        "prompt": node(
            root,
            "prompter",
            "a prompt",
            replies=[
                node(first, "assistant", "one", rank=1),
                node(second, "assistant", "two", rank=0),
            ],
        ),
    }
    assert import_trees(app, [export]).imported == 1
    runner = ProjectionRunner(SQLiteLog(log_location(tmp_path)), tmp_path / "rm.sqlite")
    runner.run_once()
    ranks = dict(runner.readmodel.reader().execute("SELECT message_id, rank FROM messages"))
    runner.close()
    assert ranks == {str(root): None, str(first): 1, str(second): 0}


class Exploding(MessagesProjection):
    def on_edited(self, c, e):
        raise RuntimeError("boom")


def test_a_failed_rebuild_leaves_the_old_read_model(tmp_path):
    w, _, _ = busy_world(tmp_path)
    log = AppLog(w.app)
    path = tmp_path / "readmodel.sqlite"
    events, _ = rebuild(log, path, projections=core())
    before = dump(sqlite3.connect(path))
    with pytest.raises(ProjectionError):
        rebuild(log, path, projections=[Exploding(), TreesProjection(), UsersProjection()])
    assert dump(sqlite3.connect(path)) == before
    assert not (tmp_path / "readmodel.sqlite.rebuild").exists()
    assert before["tracking"] and all(p == events for _, p in before["tracking"])


class EventsOnly:
    """A log source that hands out domain events only (no views of the stored JSON)."""

    def __init__(self, log):
        self.read, self.head, self.decode = log.read, log.head, log.decode


def test_a_log_without_views_gives_the_same_tables(tmp_path):
    w, _, _ = busy_world(tmp_path)
    log = AppLog(w.app)
    assert project(EventsOnly(log), tmp_path / "events-only.sqlite", 5) == project(
        log, tmp_path / "views.sqlite", 5
    )


class TreesV2(TreesProjection):
    schema_version = 2  # as if its handlers had changed meaning


def test_a_projection_with_another_schema_is_projected_again(tmp_path):
    w, _, _ = busy_world(tmp_path)
    log = AppLog(w.app)
    path = tmp_path / "rm.sqlite"
    first = project(log, path, 100)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE trees SET size = -1")  # what the old version would have left
    conn.commit()
    runner = ProjectionRunner(log, path, [MessagesProjection(), TreesV2(), UsersProjection()])
    assert runner.readmodel.positions()["trees"] == 0  # dropped, to be projected again
    assert runner.readmodel.positions()["messages"] == log.head()  # the others keep theirs
    runner.run_once()
    again = dump(runner.readmodel.reader())
    runner.close()
    assert {t: rows for t, rows in again.items() if t != "schemas"} == {
        t: rows for t, rows in first.items() if t != "schemas"
    }
    assert again["schemas"] != first["schemas"]


def test_a_read_model_of_the_old_messages_schema_is_projected_again(tmp_path):
    """Schema version 2 of the messages projection dropped label_sums and label_counts: a read
    model written before loses them when the projection is projected again."""
    w, _, _ = busy_world(tmp_path)
    log = AppLog(w.app)
    path = tmp_path / "rm.sqlite"
    first = project(log, path, 100)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE messages ADD COLUMN label_sums TEXT NOT NULL DEFAULT '{}'")
    conn.execute("UPDATE schemas SET digest = 'v1' WHERE projection = 'messages'")
    conn.commit()
    conn.close()
    runner = ProjectionRunner(
        log, path, [MessagesProjection(), TreesProjection(), UsersProjection()]
    )
    assert runner.readmodel.positions()["messages"] == 0
    runner.run_once()
    columns = {row[1] for row in runner.readmodel.reader().execute("PRAGMA table_info(messages)")}
    again = dump(runner.readmodel.reader())
    runner.close()
    assert not columns & {"label_sums", "label_counts"}
    assert again == first


# ---------------------------------------------------------------- rebuilds in parallel
@pytest.fixture(scope="module")
def store(tmp_path_factory, request, store_under_test):
    """A log filled by the simulator, which the rebuild's worker processes read themselves:
    an events.sqlite, or in the PostgreSQL pass a schema of its own (the module's tests share
    it, so it cannot be the per-test schema)."""
    folder = tmp_path_factory.mktemp("store")
    url = request.getfixturevalue("postgres").url() if store_under_test == "postgresql" else None
    app = open_app(folder, TreeConfig(goal_tree_size=3, min_goal_tree_size=1), store=url)
    location = url or folder / "events.sqlite"
    runner = ProjectionRunner(SQLiteLog(location), folder / "sim.sqlite")
    run_simulation(app, runner, trees=3, users=10, seed=5)
    runner.close()
    app.close()
    return location


INDEXES = "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"


def test_workers_build_the_same_file(store, tmp_path):
    log = SQLiteLog(store)
    tables, indexes = {}, {}
    for workers in (1, 2, 3):
        path = tmp_path / f"w{workers}.sqlite"
        steps: list[int] = []
        events, _ = rebuild(log, path, workers=workers, batch_size=23, progress=steps.append)
        assert events == sum(steps) == log.head() > 200
        conn = sqlite3.connect(path)
        tables[workers], indexes[workers] = dump(conn), conn.execute(INDEXES).fetchall()
        conn.close()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            f"w{n}.sqlite" for n in range(1, workers + 1)
        )  # no scratch file left behind
    assert tables[1]["tracking"] and {p for _, p in tables[1]["tracking"]} == {log.head()}
    assert tables[1] == tables[2] == tables[3]
    assert indexes[1] == indexes[2] == indexes[3]


class ExplodingLabels(MessagesProjection):
    def on_labels(self, c, e):
        raise RuntimeError("boom in a worker")


def test_a_failing_worker_fails_the_rebuild_and_keeps_the_old_file(store, tmp_path):
    log = SQLiteLog(store)
    path = tmp_path / "readmodel.sqlite"
    rebuild(log, path, projections=core(), workers=1)
    before = dump(sqlite3.connect(path))
    with pytest.raises(ProjectionError, match="boom in a worker"):
        rebuild(
            log,
            path,
            projections=[ExplodingLabels(), TreesProjection(), UsersProjection()],
            workers=2,
        )
    assert dump(sqlite3.connect(path)) == before
    assert [p.name for p in tmp_path.iterdir()] == ["readmodel.sqlite"]


def test_split_balances_by_replay_cost_and_keeps_readers_together():
    class Reader(TreesProjection):
        reads_others = True

    projections = default_projections()
    groups = split(projections, 2)
    assert sorted(p.name for g in groups for p in g) == sorted(p.name for p in projections)
    loads = [sum(p.replay_cost for p in g) for g in groups]
    assert max(loads) - min(loads) <= max(p.replay_cost for p in projections)
    for group in groups:  # each keeps the projections' order
        assert group == [p for p in projections if p in group]
    assert split(projections, 1) == [projections]
    mixed = [*core(), Reader()]
    assert split(mixed, 2) == [mixed]
