"""Backlog activation, and the process loop that runs expiry, backlog and lottery together."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from api.bootstrap import load_config, open_app
from api.cli import main
from api.storage.logdb import log_location
from domain.model.errors import InvalidStateTransitionError
from domain.model.states import TreeState
from domain.model.task_types import TaskType
from domain.service.oa_import import import_trees
from domain.service.processes import BacklogActivation, ProcessLoop
from projections.log import SQLiteLog
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from tests.projection_helpers import World

BASE = datetime(2023, 2, 1, tzinfo=UTC)


def export(lang: str, day: int, replies: int = 2, grandchildren: int = 0) -> dict:
    """An OA export tree (all accepted) created ``day`` days after BASE: a prompt with
    ``replies`` assistant replies; the first reply's prompter follow-up gets
    ``grandchildren`` assistant replies (a second rankable parent when >= 2)."""

    def node(role: str, text: str, children: list | None = None) -> dict:
        return {
            "message_id": str(uuid.uuid4()),
            "role": role,
            "text": text,
            "lang": lang,
            "review_result": True,
            "created_date": (BASE + timedelta(days=day)).isoformat(),
            "replies": children or [],
        }

    answers = [node("assistant", f"answer {k}") for k in range(replies)]
    if grandchildren and answers:
        answers[0]["replies"] = [
            node(
                "prompter",
                "and then?",
                [node("assistant", f"then {k}") for k in range(grandchildren)],
            )
        ]
    root = node("prompter", f"{lang} prompt of day {day}", answers)
    return {"message_tree_id": root["message_id"], "prompt": root}


def backlog(w: World, *trees: dict) -> list[UUID]:
    report = import_trees(w.app, list(trees), state=TreeState.BACKLOG_RANKING)
    assert report.imported == len(trees)
    return [UUID(t["message_tree_id"]) for t in trees]


def states(w: World, *trees: UUID) -> list[str]:
    return [w.app.get_tree(t).state.value for t in trees]


def test_floor_activates_oldest_first_per_language(tmp_path):
    w = World(tmp_path, min_active_rankings_per_lang=2, p_activate_backlog_tree=0.0)
    # Imported out of date order: the oldest goes first whatever the import order was.
    en_new, en_old, en_mid = backlog(w, export("en", 9), export("en", 1), export("en", 5))
    de_one, de_two = backlog(w, export("de", 3), export("de", 4))
    process = BacklogActivation(w.app, w.runner.log, random.Random(0))
    done = process.run(w.conn)
    # One rankable parent per tree: two trees per language reach the floor of two.
    assert [t for t, _ in done] == [de_one, de_two, en_old, en_mid]
    assert states(w, en_old, en_mid, en_new) == ["ranking", "ranking", "backlog_ranking"]
    assert states(w, de_one, de_two) == ["ranking", "ranking"]
    reasons = w.conn.execute("SELECT DISTINCT state_reason FROM trees WHERE state = 'ranking'")
    assert reasons.fetchall() == [("backlog",)]
    assert process.run(w.conn) == []  # the floor is met: nothing more, however often it runs


def test_floor_counts_open_rankings_not_trees(tmp_path):
    w = World(tmp_path, min_active_rankings_per_lang=3, p_activate_backlog_tree=0.0)
    # The first tree brings two parents to rank (root and the follow-up), the second one.
    two, one, spare = backlog(w, export("en", 1, grandchildren=2), export("en", 2), export("en", 3))
    done = BacklogActivation(w.app, w.runner.log).run(w.conn)
    assert [t for t, _ in done] == [two, one]
    assert states(w, spare) == ["backlog_ranking"]
    # Ranking the root of `two` completes that parent: one short of the floor again.
    tree = w.app.get_tree(two)
    answers = list(tree.messages[two].children)
    for name in "bc":  # World requires two rankings per parent
        w.app.submit_ranking(
            actor=w.users[name], tree_id=two, parent_id=two, ranked_message_ids=answers
        )
    assert [t for t, _ in BacklogActivation(w.app, w.runner.log).run(w.conn)] == [spare]


def test_open_ranking_tasks_do_not_complete_a_ranking(tmp_path):
    w = World(tmp_path, min_active_rankings_per_lang=1, p_activate_backlog_tree=0.0)
    first, second = backlog(w, export("en", 1), export("en", 2))
    process = BacklogActivation(w.app, w.runner.log)
    assert [t for t, _ in process.run(w.conn)] == [first]
    for name in "bc":  # the two rankings it needs, handed out but not answered yet
        w.app.issue_task(
            user_id=w.uid(name),
            task_type=TaskType.RANK_ASSISTANT_REPLIES,
            tree_id=first,
            message_id=first,
        )
    assert process.run(w.conn) == []
    assert states(w, second) == ["backlog_ranking"]


def test_a_tree_with_nothing_to_rank_is_aborted_and_does_not_count(tmp_path):
    w = World(tmp_path, min_active_rankings_per_lang=1, p_activate_backlog_tree=0.0)
    lonely, good, spare = backlog(w, export("en", 1, replies=1), export("en", 2), export("en", 3))
    done = BacklogActivation(w.app, w.runner.log).run(w.conn)
    assert [t for t, _ in done] == [lonely, good]
    assert states(w, lonely, good, spare) == ["aborted_low_grade", "ranking", "backlog_ranking"]


def test_no_floor_and_no_draws_means_no_activation(tmp_path):
    w = World(tmp_path, p_activate_backlog_tree=0.0)  # OA's default floor: 0
    trees = backlog(w, export("en", 1))
    assert BacklogActivation(w.app, w.runner.log).run(w.conn) == []
    assert states(w, *trees) == ["backlog_ranking"]


def test_a_stale_read_model_cannot_activate_twice(tmp_path):
    w = World(tmp_path, min_active_rankings_per_lang=1, p_activate_backlog_tree=0.0)
    first, second = backlog(w, export("en", 1), export("en", 2))
    conn = w.conn  # synced once, then left behind
    process = BacklogActivation(w.app, w.runner.log)
    assert [t for t, _ in process.run(conn)] == [first]
    head = w.runner.log.head()
    # An activation of an active tree is refused and records nothing ...
    with pytest.raises(InvalidStateTransitionError):
        w.app.activate_tree(tree_id=first, reason="backlog")
    # ... so a round on the stale read model (first still in the backlog, nothing open)
    # stops at the refusal instead of activating the next tree on stale counts.
    assert process.run(conn) == []
    assert w.runner.log.head() == head
    assert states(w, first, second) == ["ranking", "backlog_ranking"]
    assert process.run(w.conn) == []  # caught up: the floor is met


def test_chance_draws_follow_transitions_after_the_start(tmp_path):
    w = World(tmp_path, p_activate_backlog_tree=1.0)
    lonely, en_one, en_two = backlog(
        w, export("en", 1, replies=1), export("en", 2), export("en", 3)
    )
    (de_tree,) = backlog(w, export("de", 1))
    halted_before = w.growing_tree("a", "bcd")
    w.app.halt_tree(tree_id=halted_before, actor=w.users["a"])
    process = BacklogActivation(w.app, w.runner.log, random.Random(1))
    assert process.run(w.conn) == []  # a transition before the process started draws nothing
    # Accepted prompts entering the lottery do not draw (OA's flag quirk), nor does halting
    # a tree that was not working (a waiting prompt).
    growing = w.growing_tree("e", "bcd")
    waiting = w.prompt("f", "a waiting prompt")
    w.label("bcd", waiting, waiting)
    w.app.halt_tree(tree_id=waiting, actor=w.users["a"])
    assert process.run(w.conn) == []
    # Halting a growing English tree draws one English backlog tree; the first has nothing
    # to rank, is aborted and does not count, so the next one is activated.
    w.app.halt_tree(tree_id=growing, actor=w.users["a"])
    assert [t for t, _ in process.run(w.conn)] == [lonely, en_one]
    assert process.run(w.conn) == []  # each transition draws once; leaving the backlog never
    assert states(w, lonely, en_one, en_two, de_tree) == [
        "aborted_low_grade",
        "ranking",
        "backlog_ranking",
        "backlog_ranking",
    ]


def test_chance_draws_use_the_probability(tmp_path):
    w = World(tmp_path, p_activate_backlog_tree=0.0)
    trees = backlog(w, export("en", 1))
    process = BacklogActivation(w.app, w.runner.log, random.Random(1))
    w.app.halt_tree(tree_id=w.growing_tree("a", "bcd"), actor=w.users["a"])
    assert process.run(w.conn) == []
    assert states(w, *trees) == ["backlog_ranking"]


def test_process_loop_round_is_idempotent(tmp_path):
    w = World(
        tmp_path, min_active_rankings_per_lang=1, p_activate_backlog_tree=0.0, max_active_trees=1
    )
    backlog(w, export("en", 1), export("en", 2))
    waiting = [w.prompt("a", f"waiting {k}") for k in range(2)]
    for tree in waiting:
        w.label("bcd", tree, tree)
    now = w.app.now()
    task = w.app.issue_task(user_id=w.uid("h"), task_type=TaskType.INITIAL_PROMPT, lang="en")
    w.app.clock = lambda: now + timedelta(days=3)  # past the task's validity
    loop = ProcessLoop(w.app, w.runner, rng=random.Random(2))
    sweep = loop.run_once()
    assert sweep.expired == {w.uid("h"): [task.id]}
    assert len(sweep.backlog) == 1 and len(sweep.lottery) == 1
    grown = [t for t in waiting if w.app.get_tree(t).state.value == "growing"]
    assert [t for t, _ in sweep.lottery] == grown
    again = loop.run_once()
    assert (again.expired, again.backlog, again.lottery) == ({}, [], [])


def test_process_loop_thread_runs_rounds(tmp_path):
    w = World(tmp_path, min_active_rankings_per_lang=1, p_activate_backlog_tree=0.0)
    (tree,) = backlog(w, export("en", 1))
    loop = ProcessLoop(w.app, w.runner, interval=0.01).start()
    try:
        deadline = datetime.now() + timedelta(seconds=5)
        while w.app.get_tree(tree).state.value != "ranking" and datetime.now() < deadline:
            time.sleep(0.01)
    finally:
        loop.stop()
    assert states(w, tree) == ["ranking"] and loop.error is None


def test_cli_runs_one_round_and_a_rebuild_changes_nothing(tmp_path, capsys):
    (tmp_path / "config.toml").write_text("[tree]\nmin_active_rankings_per_lang = 1\n")
    app = open_app(tmp_path, load_config(tmp_path))
    trees = [export("en", 1), export("en", 2)]
    import_trees(app, trees, state=TreeState.BACKLOG_RANKING)
    app.close()
    args = ["projections", "processes", "--once", "--data", str(tmp_path), "--seed", "1"]
    assert main(args) == 0
    assert "activated 1 backlog tree(s)" in capsys.readouterr().out
    # A rebuilt read model is the same state: the next round finds the floor met.
    log = SQLiteLog(log_location(tmp_path))
    rebuild(log, tmp_path / "readmodel.sqlite")
    assert main(args) == 0
    assert "activated 0 backlog tree(s)" in capsys.readouterr().out
    with ProjectionRunner(log, tmp_path / "readmodel.sqlite") as runner:
        runner.run_once()
        rows = (
            runner.readmodel.reader()
            .execute("SELECT state, count(*) FROM trees GROUP BY state ORDER BY state")
            .fetchall()
        )
    assert rows == [("backlog_ranking", 1), ("ranking", 1)]


def test_the_loop_runs_beside_the_http_service(tmp_path):
    """How the server runs it: its runner and its lottery (which draws under its lock)."""
    from api.http.service import Service

    (tmp_path / "config.toml").write_text("[tree]\nmin_active_rankings_per_lang = 1\n")
    service = Service(tmp_path, seed=3, process_interval=0).open()
    try:
        assert service.processes is None  # 0: off
        import_trees(service.app, [export("en", 1)], state=TreeState.BACKLOG_RANKING)
        loop = ProcessLoop(service.app, service.runner, interval=0.01, lottery=service.run_lottery)
        sweep = loop.run_once()
        assert len(sweep.backlog) == 1 and sweep.lottery == []  # the service drew, if any
        tree = sweep.backlog[0][0]
        assert service.reader().execute(
            "SELECT state FROM trees WHERE tree_id = ?", (str(tree),)
        ).fetchone() == ("ranking",)
    finally:
        service.close()


def test_the_service_starts_and_stops_its_own_loop(tmp_path):
    """An opened service runs the processes itself: a backlog tree is activated with no
    caller doing anything; closing stops the thread."""
    import time

    from api.http.service import Service

    (tmp_path / "config.toml").write_text("[tree]\nmin_active_rankings_per_lang = 1\n")
    service = Service(tmp_path, seed=3, process_interval=0.05).open()
    try:
        import_trees(service.app, [export("en", 1)], state=TreeState.BACKLOG_RANKING)
        deadline = time.monotonic() + 10
        state = None
        while time.monotonic() < deadline and state != ("ranking",):
            time.sleep(0.05)
            state = service.reader().execute("SELECT state FROM trees").fetchone()
        assert state == ("ranking",)
        thread = service.processes._thread
        assert thread is not None and thread.is_alive()
    finally:
        service.close()
    assert service.processes is None and not thread.is_alive()


def test_a_bad_process_interval_is_refused(monkeypatch, tmp_path):
    from api.http.service import Service
    from domain.model.errors import ConfigError

    monkeypatch.setenv("DATAENGINE_PROCESS_INTERVAL", "soon")
    with pytest.raises(ConfigError, match="DATAENGINE_PROCESS_INTERVAL"):
        Service(tmp_path)
