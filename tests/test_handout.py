from __future__ import annotations

import random
from collections import Counter
from uuid import UUID

import msgspec
import pytest

from domain.model.errors import ErrorCode, TaskNotAvailableError
from domain.model.task_types import TaskType as T
from domain.service.handout import Handout, choose
from domain.service.processes import expire_tasks, prompt_lottery
from projections import availability as av
from tests.projection_helpers import World


def handout(w: World, seed: int = 0) -> Handout:
    return Handout(
        w.app,
        w.runner.readmodel.reader,
        random.Random(seed),
        before_read=lambda: w.runner.catch_up(w.runner.log.head()),
    )


def unavailable(h: Handout, w: World, user: str, kind: T) -> bool:
    with pytest.raises(TaskNotAvailableError) as info:
        h.request(w.uid(user), kind)
    return info.value.error_code is ErrorCode.TASK_REQUESTED_TYPE_NOT_AVAILABLE


def test_label_task_payload_and_exclusions(tmp_path):
    w = World(tmp_path)
    tree = w.prompt("a", "What is a river?")
    h = handout(w)
    assert unavailable(h, w, "a", T.LABEL_INITIAL_PROMPT)  # own message
    task = h.request(w.uid("b"), T.LABEL_INITIAL_PROMPT)
    assert task.type == "label_initial_prompt" and task.task.message_id == tree
    p = task.payload
    assert (
        p["mode"] == "full" and p["disposition"] == "quality" and p["prompt"] == "What is a river?"
    )
    assert "spam" in p["mandatory_labels"] and set(p["mandatory_labels"]) <= set(p["valid_labels"])
    assert w.app.get_user(w.uid("b")).task(task.id).payload == p  # recorded on the user
    w.app.ack_task(user_id=w.uid("b"), task_id=task.id, frontend_message_id="f1")
    w.app.submit_labels(
        actor=w.users["b"], tree_id=tree, message_id=tree, task_id=task.id, labels={"spam": 0.0}
    )
    assert unavailable(h, w, "b", T.LABEL_INITIAL_PROMPT)  # already labelled
    skipped = h.request(w.uid("c"), T.LABEL_INITIAL_PROMPT)
    w.app.nack_task(user_id=w.uid("c"), task_id=skipped.id)
    assert unavailable(h, w, "c", T.LABEL_INITIAL_PROMPT)  # skipped
    assert h.request(w.uid("d"), T.LABEL_INITIAL_PROMPT).task.message_id == tree


def test_random_label_tasks_use_simple_mode_below_p_full(tmp_path):
    w = World(tmp_path, p_full_labeling_review_prompt=0.0)
    w.prompt("a")
    task = handout(w).request(w.uid("b"), T.RANDOM)
    assert task.type == "label_initial_prompt"
    assert task.payload["mode"] == "simple" and task.payload["disposition"] == "spam"
    assert set(task.payload["valid_labels"]) == {"spam", "lang_mismatch"}
    explicit = handout(w).request(w.uid("c"), T.LABEL_INITIAL_PROMPT)
    assert explicit.payload["mode"] == "full"


def test_reply_reservation_hides_parent_from_others(tmp_path):
    w = World(tmp_path)
    tree = w.growing_tree()
    h = handout(w)
    task = h.request(w.uid("e"), T.ASSISTANT_REPLY)
    assert task.payload["parent_message_id"] == str(tree)
    assert [m["message_id"] for m in task.payload["conversation"]["messages"]] == [str(tree)]
    assert unavailable(h, w, "f", T.ASSISTANT_REPLY)
    w.app.ack_task(user_id=w.uid("e"), task_id=task.id, frontend_message_id="r1")
    w.app.add_reply(
        actor=w.users["e"],
        tree_id=tree,
        parent_id=tree,
        text="an answer",
        frontend_message_id="r1",
        task_id=task.id,
    )
    assert unavailable(h, w, "e", T.ASSISTANT_REPLY)  # already replied
    assert h.request(w.uid("f"), T.ASSISTANT_REPLY).task.message_id == tree


def test_ranking_task_shuffles_replies_and_excludes_own(tmp_path):
    w = World(tmp_path, goal_tree_size=4, max_children_count=3)
    tree = w.growing_tree()
    replies = [w.reply(x, tree, tree, f"reply {x}") for x in "efg"]
    for r in replies:
        w.label("bcd", tree, r)
    assert unavailable(handout(w), w, "e", T.RANK_ASSISTANT_REPLIES)
    orders = set()
    for seed in range(6):
        task = handout(w, seed).request(w.uid("h"), T.RANK_ASSISTANT_REPLIES)
        ids = [m["message_id"] for m in task.payload["reply_messages"]]
        assert sorted(ids) == sorted(map(str, replies))
        assert task.payload["ranking_parent_id"] == str(tree)
        assert task.payload["reveal_synthetic"] is False
        orders.add(tuple(ids))
    assert len(orders) > 1
    w.app.nack_task(user_id=w.uid("h"), task_id=task.id)
    assert unavailable(handout(w), w, "h", T.RANK_ASSISTANT_REPLIES)  # skipped the last one


def test_lonely_child_rule_prefers_parents_with_one_reply(tmp_path):
    w = World(
        tmp_path,
        goal_tree_size=6,
        max_children_count=3,
        p_lonely_child_extension=1.0,
        max_active_trees=5,
    )
    lonely = w.growing_tree("a", "bcd")
    w.growing_tree("b", "cde")
    w.reply("f", lonely, lonely)
    pools = handout(w).pools(w.uid("g"))
    assert len(pools.parents) == 2
    picked = {
        choose(pools, w.app.config, T.ASSISTANT_REPLY, random.Random(s)).message_id
        for s in range(30)
    }
    assert picked == {str(lonely)}
    even = msgspec.structs.replace(w.app.config, p_lonely_child_extension=0.0)
    picked = {
        choose(pools, even, T.ASSISTANT_REPLY, random.Random(s)).message_id for s in range(30)
    }
    assert len(picked) == 2


def test_random_type_weights():
    parents = [av.Parent("p", "t", "prompter", 0, 2)]
    reviews = [av.Review("r", "t", "assistant", False), av.Review("q", "u", "prompter", True)]
    pools = av.Pools(parents, reviews, [av.RankingParent("k", "v", "assistant")], 10)

    class Config:
        p_full_labeling_review_prompt = p_full_labeling_review_reply_assistant = 1.0
        p_full_labeling_review_reply_prompter = 1.0
        p_lonely_child_extension, lonely_children_count = 0.75, 2

    rng = random.Random(1)
    drawn = Counter(choose(pools, Config, T.RANDOM, rng).task_type for _ in range(20000))
    total = 22.01
    assert drawn[T.RANK_ASSISTANT_REPLIES] / 20000 == pytest.approx(10 / total, abs=0.015)
    assert drawn[T.LABEL_ASSISTANT_REPLY] / 20000 == pytest.approx(5 / total, abs=0.015)
    assert drawn[T.LABEL_INITIAL_PROMPT] / 20000 == pytest.approx(5 / total, abs=0.015)
    assert drawn[T.ASSISTANT_REPLY] / 20000 == pytest.approx(2 / total, abs=0.01)
    assert drawn[T.INITIAL_PROMPT] < 40
    with pytest.raises(TaskNotAvailableError):
        choose(av.Pools([], [], [], 0), Config, T.RANDOM, rng)


def test_prompt_lottery_respects_max_active_trees_and_is_idempotent(tmp_path):
    w = World(tmp_path, max_active_trees=2)
    waiting = []
    for i, author in enumerate("abc"):
        tree = w.prompt(author, f"prompt {i}")
        w.label("efg", tree, tree)
        waiting.append(tree)
    done = prompt_lottery(w.app, w.conn, random.Random(0))
    assert len(done) == 2
    assert prompt_lottery(w.app, w.conn, random.Random(0)) == []  # no room: nothing happens
    states = Counter(w.app.get_tree(t).state.value for t in waiting)
    assert states == {"growing": 2, "prompt_lottery_waiting": 1}


def test_expired_tasks_are_expired_once(tmp_path):
    from datetime import timedelta

    w = World(tmp_path)
    w.prompt("a")
    task = handout(w).request(w.uid("b"), T.LABEL_INITIAL_PROMPT)
    assert expire_tasks(w.app, w.conn) == {}
    later = w.app.now() + timedelta(minutes=w.app.config.task_validity_minutes + 1)
    w.app.clock = lambda: later
    assert expire_tasks(w.app, w.conn) == {w.uid("b"): [task.id]}
    assert expire_tasks(w.app, w.conn) == {}
    assert w.conn.execute("SELECT status FROM tasks").fetchall() == [("expired",)]


# ---------------------------------------------------------------- reservations (beyond OA)
def _counts(w: World, user: str, now=None) -> dict:
    return av.availability(w.conn, w.app.config, "en", w.uid(user), now)


def test_open_label_tasks_reserve_a_message_until_answered_or_skipped(tmp_path):
    w = World(tmp_path, num_reviews_initial_prompt=2)
    tree = w.prompt("a")
    h = handout(w)
    first, second = (h.request(w.uid(u), T.LABEL_INITIAL_PROMPT) for u in "bc")
    assert first.task.message_id == second.task.message_id == tree
    # two open tasks cover the two reviews it needs: nobody else gets it
    assert _counts(w, "d")[T.LABEL_INITIAL_PROMPT] == 0
    assert unavailable(h, w, "d", T.LABEL_INITIAL_PROMPT)
    assert _counts(w, "b")[T.LABEL_INITIAL_PROMPT] == 1  # a holder's own task does not hide it
    w.app.ack_task(user_id=w.uid("b"), task_id=first.id, frontend_message_id="l1")
    w.app.submit_labels(
        actor=w.users["b"],
        tree_id=tree,
        message_id=tree,
        task_id=first.id,
        labels={"spam": 0.0, "lang_mismatch": 0.0},
    )
    assert unavailable(h, w, "d", T.LABEL_INITIAL_PROMPT)  # one review + one open task
    w.app.nack_task(user_id=w.uid("c"), task_id=second.id)
    assert h.request(w.uid("d"), T.LABEL_INITIAL_PROMPT).task.message_id == tree


def test_label_reservations_lapse_after_the_reservation_span(tmp_path):
    from datetime import timedelta

    w = World(tmp_path, num_reviews_initial_prompt=2)
    w.prompt("a")
    h = handout(w)
    for u in "bc":
        h.request(w.uid(u), T.LABEL_INITIAL_PROMPT)
    assert _counts(w, "d")[T.LABEL_INITIAL_PROMPT] == 0
    span = w.app.config.recent_tasks_span_sec
    almost = w.app.now() + timedelta(seconds=span - 5)
    assert _counts(w, "d", almost)[T.LABEL_INITIAL_PROMPT] == 0
    later = w.app.now() + timedelta(seconds=span + 1)
    assert _counts(w, "d", later)[T.LABEL_INITIAL_PROMPT] == 1
    late = Handout(
        w.app,
        w.runner.readmodel.reader,
        random.Random(0),
        before_read=lambda: w.runner.catch_up(w.runner.log.head()),
        clock=lambda: later,
    )
    assert late.request(w.uid("d"), T.LABEL_INITIAL_PROMPT).type == "label_initial_prompt"


def test_expired_tasks_reserve_nothing(tmp_path):
    from datetime import timedelta

    w = World(tmp_path, num_reviews_initial_prompt=1, recent_tasks_span_sec=10**6)
    w.prompt("a")
    task = handout(w).request(w.uid("b"), T.LABEL_INITIAL_PROMPT)
    assert _counts(w, "c")[T.LABEL_INITIAL_PROMPT] == 0  # one open task covers the one review
    past_expiry = w.app.now() + timedelta(minutes=w.app.config.task_validity_minutes, seconds=1)
    # past its expiry the task holds nothing, whether or not expiry has marked it yet
    assert _counts(w, "c", past_expiry)[T.LABEL_INITIAL_PROMPT] == 1
    w.app.clock = lambda: past_expiry
    assert expire_tasks(w.app, w.conn) == {w.uid("b"): [task.id]}
    assert _counts(w, "c", past_expiry)[T.LABEL_INITIAL_PROMPT] == 1


def test_open_ranking_tasks_reserve_a_parent_until_answered_or_skipped(tmp_path):
    from datetime import timedelta

    w = World(tmp_path, goal_tree_size=3, max_children_count=3)  # 2 rankings required
    tree = w.growing_tree()
    replies = [w.reply(x, tree, tree, f"reply {x}") for x in "ef"]
    for r in replies:
        w.label("bcd", tree, r)
    h = handout(w)
    g, hh = (h.request(w.uid(u), T.RANK_ASSISTANT_REPLIES) for u in "gh")
    assert g.task.message_id == hh.task.message_id == tree
    assert _counts(w, "a")[T.RANK_ASSISTANT_REPLIES] == 0
    assert unavailable(h, w, "a", T.RANK_ASSISTANT_REPLIES)
    later = w.app.now() + timedelta(seconds=w.app.config.recent_tasks_span_sec + 1)
    assert _counts(w, "a", later)[T.RANK_ASSISTANT_REPLIES] == 1  # the reservation lapses
    ranked = [UUID(m["message_id"]) for m in g.payload["reply_messages"]]
    w.app.ack_task(user_id=w.uid("g"), task_id=g.id, frontend_message_id="k1")
    w.app.submit_ranking(
        actor=w.users["g"], tree_id=tree, parent_id=tree, ranked_message_ids=ranked, task_id=g.id
    )
    assert unavailable(h, w, "a", T.RANK_ASSISTANT_REPLIES)  # one ranking + one open task
    w.app.nack_task(user_id=w.uid("h"), task_id=hh.id)
    assert h.request(w.uid("a"), T.RANK_ASSISTANT_REPLIES).task.message_id == tree


def test_claims_cover_hand_outs_the_read_model_does_not_show_yet(tmp_path):
    w = World(tmp_path, num_reviews_initial_prompt=2)
    tree = w.prompt("a")
    w.runner.catch_up(w.runner.log.head())
    # No before_read: the read model stays where it is, as it lags behind a busy server.
    h = Handout(
        w.app, w.runner.readmodel.reader, random.Random(0), position=lambda: w.runner.position
    )
    blind = Handout(w.app, w.runner.readmodel.reader, random.Random(0))
    assert [h.request(w.uid(u), T.LABEL_INITIAL_PROMPT).task.message_id for u in "bc"] == [tree] * 2
    assert blind.request(w.uid("e"), T.LABEL_INITIAL_PROMPT).task.message_id == tree  # overbooked
    assert unavailable(h, w, "d", T.LABEL_INITIAL_PROMPT)  # b's and c's claims count
    w.runner.catch_up(
        w.runner.log.head()
    )  # now the read model shows the tasks: the claims are not counted twice
    for skipper in "ce":
        (task,) = w.app.get_user(w.uid(skipper)).tasks.values()
        w.app.nack_task(user_id=w.uid(skipper), task_id=task.id)
    w.runner.catch_up(w.runner.log.head())
    assert h.request(w.uid("d"), T.LABEL_INITIAL_PROMPT).task.message_id == tree
