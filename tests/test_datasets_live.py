"""The training projection: rows kept current from the log, live == rebuild, the build's
fast path from its rows (byte-identical to replay), the slim replay against the aggregate,
and `datasets status`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from uuid import UUID

import pytest

from api.bootstrap import open_app
from api.cli import main
from api.storage.logdb import log_location
from domain.model.actor import SYSTEM
from domain.model.catalogue import event_classes, topics_of
from domain.model.config import TreeConfig
from domain.model.errors import DomainError, ErrorCode
from domain.model.tree import ConversationTree
from domain.service.simulator import run_simulation
from projections import log_reader
from projections.datasets import replay as slim
from projections.datasets.build import build, replay_trees
from projections.datasets.live import TrainingProjection
from projections.datasets.rows import BuildOptions, cut
from projections.datasets.writer import sha256
from projections.log import AppLog, SQLiteLog
from projections.rebuild import rebuild
from projections.runner import ProjectionError, ProjectionRunner
from projections.store import READMODEL_FILE
from tests import log_helpers
from tests.projection_helpers import World, dump
from tests.store_helpers import copy_store, module_store, use_store

SMALL = TreeConfig(goal_tree_size=3, min_goal_tree_size=1)
READY = "domain.tree:ConversationTree.StateChanged"


def follow(folder: Path, batch_size: int = 1000, path: Path | None = None) -> ProjectionRunner:
    """A runner of the training projection alone, caught up with the log."""
    runner = ProjectionRunner(
        SQLiteLog(log_location(folder)),
        path or folder / READMODEL_FILE,
        [TrainingProjection()],
        batch_size=batch_size,
    )
    runner.run_once()
    return runner


def ready_trees(folder: Path) -> list[ConversationTree]:
    db = log_reader.events_db(folder)
    return [
        t
        for t in log_reader.iter_trees(db, log_reader.log_position(db))
        if t.state.value == slim.READY
    ]


def best_reply(tree: ConversationTree):  # type: ignore[no-untyped-def]
    return next((m for m in tree.messages.values() if m.rank == 0 and not m.deleted), None)


def ranked_trees(folder: Path) -> list[ConversationTree]:
    return [t for t in ready_trees(folder) if best_reply(t) is not None]


def moderate(folder: Path) -> dict[str, UUID]:
    """Delete the best reply of one ready tree, edit a message of another: content changes
    after the trees became ready."""
    app = open_app(folder, SMALL)
    first, second = ranked_trees(folder)[:2]
    ranked = best_reply(first)
    app.delete_message(tree_id=first.id, message_id=ranked.id, actor=SYSTEM)
    reply = next(m for m in second.messages.values() if m.parent_id is not None and not m.deleted)
    app.edit_message(tree_id=second.id, message_id=reply.id, text="an edited reply", actor=SYSTEM)
    return {"deleted_in": first.id, "deleted": ranked.id, "edited_in": second.id}


@pytest.fixture(scope="module")
def simulated(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[Path, str | None]:
    """A simulated store (reviews, rankings, scoring, spam) plus moderation; (folder, URL)."""
    folder = tmp_path_factory.mktemp("sim")
    with module_store(request) as url:
        app = open_app(folder, SMALL)
        with ProjectionRunner(SQLiteLog(log_location(folder)), folder / "sim.sqlite") as runner:
            run_simulation(app, runner, trees=5, users=12, seed=3)
        moderate(folder)
    return folder, url


@pytest.fixture
def store(simulated: tuple[Path, str | None], monkeypatch: pytest.MonkeyPatch) -> Path:
    use_store(monkeypatch, simulated[1])
    return simulated[0]


@pytest.fixture
def copied(store: Path, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch) -> Path:
    """A folder with a copy of the store's log (in use from now on), for a test to change."""
    copy_store(store, tmp_path / "copy", request, monkeypatch)
    return tmp_path / "copy"


def rows_of(conn: sqlite3.Connection) -> dict[tuple[str, str], tuple[int, bytes]]:
    return {
        (k, t): (c, lines)
        for k, t, c, lines in conn.execute(
            "SELECT row_kind, tree_id, count, lines FROM dataset_rows"
        )
    }


def test_rows_are_the_replay_cut_and_live_equals_rebuild(store: Path, tmp_path: Path) -> None:
    live = follow(store, batch_size=7, path=tmp_path / "live.sqlite")
    log = SQLiteLog(log_location(store))
    assert live.position == log.head()
    rebuild(log, tmp_path / "rebuilt.sqlite", projections=[TrainingProjection()])
    again = ProjectionRunner(log, tmp_path / "rebuilt.sqlite", [TrainingProjection()])
    tables = dump(live.readmodel.reader())
    assert tables["dataset_rows"] and tables["dataset_trees"]
    assert tables == dump(again.readmodel.reader())

    db = log_reader.events_db(store)
    trees = list(replay_trees(db, log.head()))
    assert len(trees) >= 5
    expected = {
        (row_kind, str(t.id)): value
        for t in trees
        for row_kind, value in cut(t, BuildOptions()).items()
    }
    assert rows_of(live.readmodel.reader()) == expected
    # The ready position is the event that made the tree ready, exactly.
    for tree_id, ready_at in live.readmodel.reader().execute(
        "SELECT tree_id, ready_position FROM dataset_trees"
    ):
        ((originator_id, topic, state),) = log_helpers.read(
            db, "SELECT originator_id, topic, state FROM stored_events WHERE rowid = ?", (ready_at,)
        )
        assert topic == READY and json.loads(state)["to_state"] == slim.READY
        assert originator_id == UUID(tree_id).hex


class Crashing(TrainingProjection):
    """Fails at the end of its third batch, after writing its rows."""

    def end_batch(self, cursor: sqlite3.Cursor) -> None:
        self.batches = getattr(self, "batches", 0) + 1
        self.recut = len(self._dirty)
        super().end_batch(cursor)
        if self.batches == 3:
            raise RuntimeError("power cut")


def test_a_failed_batch_leaves_nothing_and_following_resumes(store: Path, tmp_path: Path) -> None:
    log = SQLiteLog(log_location(store))
    path = tmp_path / "rm.sqlite"
    crashing = Crashing()
    runner = ProjectionRunner(log, path, [crashing], batch_size=150)
    with pytest.raises(ProjectionError, match="power cut"):
        runner.run_once()
    assert runner.position == 300 and crashing.recut > 0  # the lost batch had re-cut trees
    assert runner.readmodel.reader().execute(
        "SELECT count(*) FROM dataset_trees WHERE changed_position > 300"
    ).fetchone() == (0,)
    runner.close()
    resumed = follow(store, batch_size=150, path=path)
    rebuild(log, tmp_path / "rebuilt.sqlite", projections=[TrainingProjection()])
    assert dump(resumed.readmodel.reader()) == dump(sqlite3.connect(tmp_path / "rebuilt.sqlite"))


def test_changes_to_a_ready_tree_recut_its_rows(copied: Path) -> None:
    folder = copied
    runner = follow(folder)
    conn = runner.readmodel.reader()
    tree = ranked_trees(folder)[0]
    tree_id = str(tree.id)
    before = {k: v for (k, t), v in rows_of(conn).items() if t == tree_id}
    ((ready_at, changed_at),) = conn.execute(
        "SELECT ready_position, changed_position FROM dataset_trees WHERE tree_id = ?", (tree_id,)
    )
    best = best_reply(tree)

    app = open_app(folder, SMALL)
    app.delete_message(tree_id=tree.id, message_id=best.id, actor=SYSTEM)
    runner.run_once()
    after = {k: v for (k, t), v in rows_of(conn).items() if t == tree_id}
    assert after != before
    assert best.text.encode() not in b"".join(lines for _, lines in after.values())
    head = log_reader.log_position(log_location(folder))
    assert conn.execute(
        "SELECT ready_position, changed_position FROM dataset_trees WHERE tree_id = ?", (tree_id,)
    ).fetchone() == (ready_at, head)

    app.undelete_message(tree_id=tree.id, message_id=best.id, actor=SYSTEM)
    runner.run_once()
    assert {k: v for (k, t), v in rows_of(conn).items() if t == tree_id} == before
    assert changed_at < head


def test_build_from_the_projection_is_byte_identical_to_replay(store: Path, tmp_path: Path) -> None:
    follow(store).close()
    cases = [
        BuildOptions(),
        BuildOptions(val_fraction=0.5, lang="en"),
        BuildOptions(kinds=("rl", "kto"), val_fraction=0.3),
        BuildOptions(lang="de"),
    ]
    for n, options in enumerate(cases):
        fast = build(store, tmp_path / f"fast{n}", options, source="projection")
        slow = build(store, tmp_path / f"slow{n}", options, source="replay")
        assert (fast.source, slow.source) == ("projection", "replay")
        assert fast == slow
        files = sorted(
            p.relative_to(tmp_path / f"fast{n}")
            for p in (tmp_path / f"fast{n}").rglob("*")
            if p.is_file()
        )
        assert len(files) == len(fast["files"]) + 1
        for name, digest in fast["files"].items():  # the manifest pins every file
            assert sha256(tmp_path / f"fast{n}" / name) == digest, name
        for name in files:
            assert (tmp_path / f"fast{n}" / name).read_bytes() == (
                tmp_path / f"slow{n}" / name
            ).read_bytes(), name
    assert fast["ready_trees"] == 0 and cases[-1].lang == "de"


def test_the_projection_serves_only_its_position_and_default_rows(
    store: Path, tmp_path: Path
) -> None:
    follow(store).close()
    head = log_reader.log_position(log_location(store))
    auto = build(store, tmp_path / "auto", BuildOptions())
    assert auto.source == "projection"
    assert build(store, tmp_path / "old", BuildOptions(), as_of=head - 1).source == "replay"
    assert build(store, tmp_path / "all", BuildOptions(sft_paths="all")).source == "replay"
    with pytest.raises(DomainError) as info:
        build(store, tmp_path / "x", BuildOptions(include_synthetic=True), source="projection")
    assert info.value.error_code == ErrorCode.VALIDATION_ERROR
    with pytest.raises(DomainError, match="stands at position"):
        build(store, tmp_path / "x", BuildOptions(), as_of=head - 1, source="projection")
    assert (
        main(
            [
                "datasets",
                "build",
                "--data",
                str(store),
                "--out",
                str(tmp_path / "cli"),
                "--source",
                "projection",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "datasets",
                "build",
                "--data",
                str(store),
                "--out",
                str(tmp_path / "cli"),
                "--source",
                "projection",
                "--sft-paths",
                "all",
            ]
        )
        == 2
    )


def test_rows_from_tables_of_other_code_are_not_served(copied: Path, tmp_path: Path) -> None:
    folder = copied
    follow(folder).close()
    with sqlite3.connect(folder / READMODEL_FILE) as conn:
        conn.execute("UPDATE schemas SET digest = 'older' WHERE projection = 'datasets'")
    with pytest.raises(DomainError, match="other code"):
        build(folder, tmp_path / "x", BuildOptions(), source="projection")
    runner = follow(folder)  # the runner re-projects them
    assert build(folder, tmp_path / "y", BuildOptions()).source == "projection"
    runner.close()


def test_slim_replay_cuts_the_rows_of_the_aggregate(store: Path) -> None:
    """Every tree of the store (every state, deletions and edits included), every option."""
    db = log_reader.events_db(store)
    position = log_reader.log_position(db)
    events: dict[str, list[tuple[str, bytes]]] = {}
    for originator_id, topic, state in log_helpers.read(
        db,
        "SELECT originator_id, topic, state FROM stored_events WHERE topic LIKE ?"
        " ORDER BY originator_id, originator_version",
        ("domain.tree:%",),
    ):
        if topic in slim.APPLY:
            events.setdefault(originator_id, []).append((topic, state))
    trees = list(log_reader.iter_trees(db, position))
    assert len(trees) == len(events) > 5
    assert {m.deleted for t in trees for m in t.messages.values()} == {True, False}
    assert any(m.edited for t in trees for m in t.messages.values())
    options = [
        BuildOptions(),
        BuildOptions(sft_paths="all", include_synthetic=True),
        BuildOptions(sft_paths="top-k", top_k=1),
    ]
    for tree in trees:
        light = slim.replay(tree.id, events[tree.id.hex])
        assert light.state is tree.state
        for option in options:
            assert cut(light, option) == cut(tree, option)


def test_the_slim_replay_knows_every_content_event() -> None:
    """Every tree event of the catalogue is either applied to a RowTree or declared to hold
    no row fact; upcasters would bypass the slim replay, so a new class version must be
    taught to it."""
    events = set(event_classes(ConversationTree))
    applied, ignored = set(slim.APPLIED), set(slim.NO_ROW_FACTS)
    assert applied | ignored == events and not applied & ignored
    assert ConversationTree.RanksImported in applied
    for cls in applied:
        assert getattr(cls, "class_version", 1) == 1, cls
    # both the stored and the current topic of each applied event are taken
    assert set(slim.APPLY) == set(topics_of(*applied))
    assert slim.STATE_EVENTS == (
        ConversationTree.TreeStarted,
        ConversationTree.StateChanged,
        ConversationTree.TreeHalted,
        ConversationTree.TreeResumed,
    )


def test_an_in_memory_log_is_followed_through_the_recorder(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.runner = ProjectionRunner(
        AppLog(w.app), tmp_path / "rm.sqlite", [TrainingProjection()], batch_size=3
    )
    tree = w.growing_tree("a", "bcd")
    x, y = w.reply("e", tree, tree, "reply x"), w.reply("f", tree, tree, "reply y")
    for reply in (x, y):
        w.label("bcd", tree, reply)
    assert w.conn.execute("SELECT count(*) FROM dataset_trees").fetchone() == (0,)
    for ranker in "gh":
        w.app.submit_ranking(
            actor=w.users[ranker], tree_id=tree, parent_id=tree, ranked_message_ids=[y, x]
        )
    assert w.app.get_tree(tree).state.value == slim.READY
    ready_at = max(
        n.id
        for n in w.app.recorder.select_notifications(start=1, limit=10_000)
        if n.topic == READY and n.originator_id == tree
    )
    assert w.conn.execute("SELECT tree_id, ready_position FROM dataset_trees").fetchall() == [
        (str(tree), ready_at)
    ]
    sft = w.conn.execute("SELECT lines FROM dataset_rows WHERE row_kind = 'sft'").fetchone()[0]
    assert [m["content"] for m in json.loads(sft)["messages"]] == ["prompt by a bcd", "reply y"]
    w.app.delete_message(tree_id=tree, message_id=y, actor=SYSTEM)
    sft = w.conn.execute("SELECT lines FROM dataset_rows WHERE row_kind = 'sft'").fetchone()[0]
    assert [m["content"] for m in json.loads(sft)["messages"]] == ["prompt by a bcd", "reply x"]


def test_status_shows_the_lag_and_what_the_projection_holds(
    copied: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = copied
    assert main(["datasets", "status", "--data", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    head = log_reader.log_position(log_location(folder))
    assert (report["log_position"], report["projection_position"]) == (head, None)

    runner = follow(folder)
    tree = ready_trees(folder)[0]
    open_app(folder, SMALL).edit_message(
        tree_id=tree.id, message_id=tree.id, text="new prompt", actor=SYSTEM
    )
    assert main(["datasets", "status", "--data", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["projection_position"], report["lag"]) == (head, 1)
    runner.run_once()
    runner.close()
    manifest = build(folder, tmp_path / "ds", BuildOptions())
    assert main(["datasets", "status", "--data", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lag"] == 0 and report["ready_trees"] == manifest["ready_trees"]
    assert report["rows"] == manifest["rows"]
    assert report["last_change_position"] == head + 1
    assert report["newest_ready_position"] < head
    assert main(["datasets", "status", "--data", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "behind by 0" in text and "rm_listwise" in text
