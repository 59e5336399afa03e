from __future__ import annotations

import random
from collections import Counter

import msgspec
import pytest

from domain.errors import ErrorCode, TaskNotAvailableError
from domain.task_types import TaskType as T
from projections import availability as av
from projections.handout import Handout, choose
from projections.processes import expire_tasks, prompt_lottery
from tests.projection_helpers import World


def handout(w: World, seed: int = 0) -> Handout:
    return Handout(w.app, w.runner.readmodel.reader, random.Random(seed), before_read=w.runner.sync)


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
    assert p["mode"] == "full" and p["disposition"] == "quality" and p["prompt"] == "What is a river?"
    assert "spam" in p["mandatory_labels"] and set(p["mandatory_labels"]) <= set(p["valid_labels"])
    assert w.app.get_user(w.uid("b")).task(task.id).payload == p  # recorded on the user
    w.app.ack_task(user_id=w.uid("b"), task_id=task.id, frontend_message_id="f1")
    w.app.submit_labels(actor=w.users["b"], tree_id=tree, message_id=tree, task_id=task.id,
                        labels={"spam": 0.0})
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
    w.app.add_reply(actor=w.users["e"], tree_id=tree, parent_id=tree, text="an answer",
                    frontend_message_id="r1", task_id=task.id)
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
    w = World(tmp_path, goal_tree_size=6, max_children_count=3, p_lonely_child_extension=1.0,
              max_active_trees=5)
    lonely = w.growing_tree("a", "bcd")
    w.growing_tree("b", "cde")
    w.reply("f", lonely, lonely)
    pools = handout(w).pools(w.uid("g"))
    assert len(pools.parents) == 2
    picked = {choose(pools, w.app.config, T.ASSISTANT_REPLY, random.Random(s)).message_id
              for s in range(30)}
    assert picked == {str(lonely)}
    even = msgspec.structs.replace(w.app.config, p_lonely_child_extension=0.0)
    picked = {choose(pools, even, T.ASSISTANT_REPLY, random.Random(s)).message_id
              for s in range(30)}
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
