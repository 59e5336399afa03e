"""Users and their tasks: the pending-task limit, ack / nack / complete guards, task expiry,
disabled users and the duplicate-text window (reference §2.5)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.model.errors import ErrorCode as E
from domain.model.states import TreeState as S
from domain.model.tree import ConversationTree as CT
from domain.model.user import User
from domain.service.application import message_id_for
from tests.conftest import names


def user_events(kit, actor, after=0):
    return kit.events(actor.user_id, after)


# ------------------------------------------------------------------ pending-task limit
@pytest.mark.parametrize("limit", [8, 3])
def test_pending_task_limit_holds_within_the_window_only(make_kit, clock, limit):
    kit = make_kit(max_pending_tasks_per_user=limit)
    user = kit.user()
    for _ in range(limit):
        kit.issue(user, "initial_prompt")
    with kit.refused(E.TASK_TOO_MANY_PENDING, user.user_id):
        kit.issue(user, "initial_prompt")
    clock.advance(seconds=kit.config.recent_tasks_span_sec - 1)
    with kit.refused(E.TASK_TOO_MANY_PENDING, user.user_id):
        kit.issue(user, "initial_prompt")
    clock.advance(seconds=2)
    task = kit.issue(user, "initial_prompt")
    assert task.id in kit.app.get_user(user.user_id).tasks


def test_closed_tasks_do_not_count_as_pending(make_kit):
    kit = make_kit(max_pending_tasks_per_user=2)
    user = kit.user()
    first = kit.issue(user, "initial_prompt", ack="f1")
    second = kit.issue(user, "initial_prompt")
    kit.app.create_prompt(actor=user, text="done", frontend_message_id="f1", task_id=first.id)
    kit.app.nack_task(user_id=user.user_id, task_id=second.id)
    kit.issue(user, "initial_prompt")
    kit.issue(user, "initial_prompt")
    with kit.refused(E.TASK_TOO_MANY_PENDING, user.user_id):
        kit.issue(user, "initial_prompt")


# ------------------------------------------------------------------ ack
def test_ack_unknown_task(kit):
    user = kit.user()
    with kit.refused(E.TASK_NOT_FOUND, user.user_id):
        kit.app.ack_task(user_id=user.user_id, task_id=uuid4(), frontend_message_id="f")


def test_ack_is_idempotent_for_the_same_id_and_refuses_another(kit):
    user = kit.user()
    task = kit.issue(user, "initial_prompt", ack="f1")
    v = kit.version(user.user_id)
    kit.app.ack_task(user_id=user.user_id, task_id=task.id, frontend_message_id="f1")
    assert kit.version(user.user_id) == v
    assert names(user_events(kit, user)).count("TaskAcknowledged") == 1
    with kit.refused(E.TASK_ALREADY_UPDATED, user.user_id):
        kit.app.ack_task(user_id=user.user_id, task_id=task.id, frontend_message_id="f2")
    other = kit.issue(user, "initial_prompt")
    with kit.refused(E.TASK_ALREADY_UPDATED, user.user_id):  # f1 is bound to the first task
        kit.app.ack_task(user_id=user.user_id, task_id=other.id, frontend_message_id="f1")
    assert kit.app.get_user(user.user_id).task_by_frontend_id("f1").id == task.id


def test_task_expires_after_validity(kit, clock):
    user = kit.user()
    acked = kit.issue(user, "initial_prompt", ack="f1")
    fresh = kit.issue(user, "initial_prompt")
    clock.advance(minutes=kit.config.task_validity_minutes - 1)
    assert kit.app.expire_tasks(user_id=user.user_id) == []
    clock.advance(minutes=1)
    with kit.refused(E.TASK_EXPIRED, user.user_id):
        kit.app.ack_task(user_id=user.user_id, task_id=fresh.id, frontend_message_id="f2")
    with kit.refused(E.TASK_EXPIRED, user.user_id):
        kit.app.create_prompt(actor=user, text="late", frontend_message_id="f1", task_id=acked.id)
    v = kit.version(user.user_id)
    assert set(kit.app.expire_tasks(user_id=user.user_id)) == {acked.id, fresh.id}
    assert names(user_events(kit, user, v)) == ["TaskExpired", "TaskExpired"]
    assert not any(t.open for t in kit.app.get_user(user.user_id).tasks.values())


def test_ack_of_done_task_with_another_id(kit):
    user = kit.user()
    task = kit.issue(user, "initial_prompt", ack="f1")
    kit.app.create_prompt(actor=user, text="a prompt", frontend_message_id="f1", task_id=task.id)
    with kit.refused(E.TASK_ALREADY_DONE, user.user_id):
        kit.app.ack_task(user_id=user.user_id, task_id=task.id, frontend_message_id="f2")


# ------------------------------------------------------------------ completing
def test_completing_an_unacked_task(kit):
    user = kit.user()
    task = kit.issue(user, "initial_prompt")
    with kit.refused(E.TASK_NOT_ACK, user.user_id):
        kit.app.create_prompt(
            actor=user, text="a prompt", frontend_message_id="f1", task_id=task.id
        )
    assert not kit.app.get_user(user.user_id).task(task.id).done
    with kit.refused(E.NO_MESSAGE_TREE_FOUND):  # no tree was started either
        kit.app.get_tree(message_id_for(kit.client_id, "f1"))


def test_task_type_must_match_the_command(kit):
    t = kit.growing_tree()
    user = kit.user()
    task = kit.issue(user, "label_initial_prompt", tree_id=t, message_id=t, ack="f1")
    with kit.refused(E.TASK_PAYLOAD_TYPE_MISMATCH, t, user.user_id):
        kit.reply(t, t, user, frontend_message_id="f1", task_id=task.id)


def test_task_is_bound_to_its_target_message(kit):
    t = kit.growing_tree(goal_tree_size=10)
    a = kit.accepted_reply(t, t)
    user = kit.user()
    task = kit.issue(user, "prompter_reply", tree_id=t, message_id=a, ack="f1")
    with kit.refused(E.INVALID_MESSAGE, t, user.user_id):
        kit.reply(t, t, user, frontend_message_id="f1", task_id=task.id)
    reply = kit.reply(t, a, user, frontend_message_id="f1", task_id=task.id)
    assert kit.message(t, reply).role == "prompter"  # the role comes from the task type
    assert kit.app.get_user(user.user_id).task(task.id).result_id == reply
    label = kit.issue(user, "label_prompter_reply", tree_id=t, message_id=reply, ack="f2")
    with kit.refused(E.INVALID_MESSAGE, t, user.user_id):
        kit.app.submit_labels(
            actor=user, tree_id=t, message_id=a, labels={"spam": 0.0}, task_id=label.id
        )


def test_label_task_payload_restricts_labels(kit):
    t = kit.prompt()
    user = kit.user()
    task = kit.issue(
        user,
        "label_initial_prompt",
        tree_id=t,
        message_id=t,
        ack="f1",
        payload={
            "valid_labels": ["spam", "lang_mismatch"],
            "mandatory_labels": ["spam", "lang_mismatch"],
        },
    )
    for labels, code in (
        ({"spam": 0.0, "quality": 1.0}, E.TEXT_LABELS_INVALID_LABEL),
        ({"spam": 0.0}, E.TEXT_LABELS_MANDATORY_LABEL_MISSING),
    ):
        with kit.refused(code, t, user.user_id):
            kit.app.submit_labels(
                actor=user, tree_id=t, message_id=t, labels=labels, task_id=task.id
            )
    out = kit.app.submit_labels(
        actor=user,
        tree_id=t,
        message_id=t,
        task_id=task.id,
        labels={"spam": 0.0, "lang_mismatch": 0.0},
    )
    assert out.recorded and kit.message(t, t).reviews[user.user_id]["lang_mismatch"] == 0.0
    again = kit.app.submit_labels(
        actor=user,
        tree_id=t,
        message_id=t,
        task_id=task.id,
        labels={"spam": 0.0, "lang_mismatch": 0.0},
    )
    assert not again.recorded and kit.message(t, t).review_count == 1


# ------------------------------------------------------------------ nack
@pytest.mark.parametrize(
    "task_type, emoji",
    [
        ("assistant_reply", "_skip_reply"),
        ("label_assistant_reply", "_skip_labeling"),
        ("rank_assistant_replies", "_skip_ranking"),
    ],
)
def test_nack_records_the_skip_and_its_emoji_only(kit, task_type, emoji):
    t, (a1, a2) = kit.ranking_tree()
    target = {"_skip_reply": a2, "_skip_labeling": a1, "_skip_ranking": t}[emoji]
    user = kit.user()
    task = kit.issue(user, task_type, tree_id=t, message_id=target)
    tv, uv = kit.version(t), kit.version(user.user_id)
    kit.app.nack_task(user_id=user.user_id, task_id=task.id, reason="too hard")
    (skipped,) = user_events(kit, user, uv)
    assert type(skipped) is User.TaskSkipped and skipped.reason == "too hard"
    (toggled,) = kit.events(t, tv)
    assert type(toggled) is CT.EmojiToggled
    assert (toggled.message_id, toggled.emoji, toggled.added, toggled.user_id) == (
        target,
        emoji,
        True,
        user.user_id,
    )
    tree = kit.tree(t)
    assert tree.state is S.RANKING
    assert {m.id: m.emoji_counts() for m in tree.messages.values() if m.emoji_counts()} == {
        target: {emoji: 1}
    }
    with kit.refused(E.TASK_ALREADY_UPDATED, user.user_id, t):
        kit.app.nack_task(user_id=user.user_id, task_id=task.id)
    with kit.refused(E.TASK_ALREADY_UPDATED, user.user_id):
        kit.app.ack_task(user_id=user.user_id, task_id=task.id, frontend_message_id="f")


def test_nack_that_fails_on_the_tree_leaves_the_user_unchanged(kit):
    user = kit.user()
    task = kit.issue(user, "assistant_reply", tree_id=uuid4(), message_id=uuid4())
    with kit.refused(E.NO_MESSAGE_TREE_FOUND, user.user_id):
        kit.app.nack_task(user_id=user.user_id, task_id=task.id)
    assert kit.app.get_user(user.user_id).task(task.id).open


def test_nack_of_a_prompt_task_writes_only_the_user(kit):
    user = kit.user()
    task = kit.issue(user, "initial_prompt")
    v = kit.version(user.user_id)
    kit.app.nack_task(user_id=user.user_id, task_id=task.id)
    assert names(user_events(kit, user, v)) == ["TaskSkipped"]
    assert kit.app.get_user(user.user_id).task(task.id).skipped


# ------------------------------------------------------------------ users
def test_disabled_user_gets_no_tasks_and_completes_none(kit):
    t = kit.growing_tree()
    user = kit.user()
    task = kit.issue(user, "assistant_reply", tree_id=t, message_id=t, ack="f1")
    kit.app.update_user(user.user_id, enabled=False)
    assert kit.app.get_user(user.user_id).enabled is False
    with kit.refused(E.USER_DISABLED, user.user_id):
        kit.issue(user, "initial_prompt")
    with kit.refused(E.USER_DISABLED, t, user.user_id):
        kit.reply(t, t, user, frontend_message_id="f1", task_id=task.id)
    kit.app.update_user(user.user_id, enabled=True)
    kit.reply(t, t, user, frontend_message_id="f1", task_id=task.id)
    assert kit.app.get_user(user.user_id).task(task.id).done


def test_ensure_user_keeps_one_user_and_updates_the_profile(kit):
    first = kit.app.ensure_user(
        client_id=kit.client_id, auth_method="discord", username="ann", display_name="Ann"
    )
    again = kit.app.ensure_user(
        client_id=kit.client_id, auth_method="discord", username="ann", display_name="Ann B."
    )
    assert first == again and kit.app.get_user(first).display_name == "Ann B."
    assert names(kit.events(first)) == ["Registered", "ProfileUpdated"]
    with kit.refused(E.USER_NOT_FOUND):
        kit.app.get_user(uuid4())


def test_duplicate_text_refused_within_the_window(kit, clock):
    user, other = kit.user(), kit.user()
    tasks = [kit.issue(user, "initial_prompt", ack=f"f{k}") for k in range(3)]
    kit.app.create_prompt(
        actor=user, text="Same text", frontend_message_id="f0", task_id=tasks[0].id
    )
    clock.advance(minutes=kit.config.duplicate_message_filter_window_minutes - 1)
    with kit.refused(E.TASK_MESSAGE_DUPLICATED, user.user_id):
        kit.app.create_prompt(
            actor=user, text="  Same text ", frontend_message_id="f1", task_id=tasks[1].id
        )
    other_task = kit.issue(other, "initial_prompt", ack="g0")
    kit.app.create_prompt(
        actor=other, text="Same text", frontend_message_id="g0", task_id=other_task.id
    )  # another user may say the same
    clock.advance(minutes=2)
    out = kit.app.create_prompt(
        actor=user, text="Same text", frontend_message_id="f2", task_id=tasks[2].id
    )
    assert out.recorded and kit.state(out.id) is S.INITIAL_PROMPT_REVIEW
