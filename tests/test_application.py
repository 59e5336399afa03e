"""The application service: moderation commands, the state machine over a whole lifecycle,
idempotent retries, atomic task completion, time travel, API clients, deterministic ids,
and durability / conflict retries on the SQLite store."""

from __future__ import annotations

from uuid import uuid4

import pytest

import domain.model.tree_rules
from api.bootstrap import open_app
from domain.model.actor import Actor
from domain.model.errors import ErrorCode as E
from domain.model.states import ALLOWED_TRANSITIONS
from domain.model.states import TreeState as S
from domain.model.tree import ConversationTree as CT
from domain.service.application import DataEngine, message_id_for
from tests.conftest import Clock, Kit, names, of, small_config, state_moves


# ================================================================== halt / resume
@pytest.mark.parametrize(
    "before, back_to",
    [
        (S.INITIAL_PROMPT_REVIEW, [S.INITIAL_PROMPT_REVIEW]),
        (S.PROMPT_LOTTERY_WAITING, [S.PROMPT_LOTTERY_WAITING]),
        (S.GROWING, [S.GROWING]),
        (S.RANKING, [S.GROWING, S.RANKING]),  # back to growing, whose goal is met: ranking again
    ],
)
def test_halt_and_resume_return_to_the_right_phase(kit, before, back_to):
    t = kit.tree_in(before)
    moderator = kit.user()
    v = kit.version(t)
    kit.app.halt_tree(tree_id=t, actor=moderator, reason="spam wave")
    (halted,) = kit.events(t, v)
    assert type(halted) is CT.TreeHalted and halted.user_id == moderator.user_id
    assert (halted.from_state, halted.to_state, halted.reason) == (
        before,
        S.HALTED_BY_MODERATOR,
        "spam wave",
    )
    with kit.refused(E.INVALID_STATE_TRANSITION, t):
        kit.app.halt_tree(tree_id=t, actor=moderator)
    v = kit.version(t)
    kit.app.resume_tree(tree_id=t, actor=moderator)
    events = kit.events(t, v)
    assert type(events[0]) is CT.TreeResumed
    assert [to for _, to in state_moves(events)] == back_to
    assert kit.state(t) is back_to[-1]


def test_final_trees_cannot_be_halted_nor_running_trees_resumed(kit):
    t, (a1, a2) = kit.ranking_tree()
    with kit.refused(E.INVALID_STATE_TRANSITION, t):
        kit.app.resume_tree(tree_id=t, actor=kit.user())
    for _ in range(3):
        kit.rank(t, t, [a1, a2])
    aborted = kit.prompt()
    kit.review(aborted, aborted, spam_votes=3)
    for tree_id in (t, aborted):
        with kit.refused(E.INVALID_STATE_TRANSITION, tree_id):
            kit.app.halt_tree(tree_id=tree_id, actor=kit.user())


# ================================================================== delete / undelete
def chain(kit):
    """root -> a -> p -> b (all accepted) plus a sibling s of a."""
    t = kit.growing_tree(goal_tree_size=10)
    a = kit.accepted_reply(t, t)
    s = kit.accepted_reply(t, t)
    p = kit.accepted_reply(t, a)
    b = kit.accepted_reply(t, p)
    return t, a, p, b, s


def test_delete_is_a_recursive_tombstone(kit):
    t, a, p, b, s = chain(kit)
    v = kit.version(t)
    kit.app.delete_message(tree_id=t, message_id=a, actor=kit.user())
    (deleted,) = kit.events(t, v)
    assert type(deleted) is CT.MessageDeleted and set(deleted.message_ids) == {a, p, b}
    tree = kit.tree(t)
    assert {m for m in (a, p, b) if tree.messages[m].deleted} == {a, p, b}
    assert tree.messages[b].text and not tree.messages[s].deleted and tree.state is S.GROWING
    assert kit.app.delete_message(tree_id=t, message_id=p, actor=kit.user()) is None


def test_undelete_restores_the_message_and_its_ancestors(kit):
    t, a, p, b, _ = chain(kit)
    kit.app.delete_message(tree_id=t, message_id=a, actor=kit.user())
    v = kit.version(t)
    kit.app.undelete_message(tree_id=t, message_id=p, actor=kit.user())
    (undeleted,) = kit.events(t, v)
    assert type(undeleted) is CT.MessageUndeleted and undeleted.message_ids == [p, a]
    tree = kit.tree(t)
    assert not tree.messages[a].deleted and not tree.messages[p].deleted
    assert tree.messages[b].deleted


@pytest.mark.parametrize("before", [S.INITIAL_PROMPT_REVIEW, S.GROWING])
def test_deleting_the_root_halts_the_tree(kit, before):
    t = kit.tree_in(before)
    if before is S.GROWING:
        kit.reply(t, t)
    v = kit.version(t)
    kit.app.delete_message(tree_id=t, message_id=t, actor=kit.user())
    events = kit.events(t, v)
    assert set(events[0].message_ids) == set(kit.tree(t).messages)
    (halted,) = of(CT.TreeHalted, events)
    assert (halted.from_state, halted.reason) == (before, "all_messages_deleted")


# ================================================================== edit / emoji
def test_edit_keeps_every_revision_in_the_log(kit):
    t = kit.growing_tree()
    a = kit.reply(t, t, text="first")
    kit.app.edit_message(tree_id=t, message_id=a, text="second", actor=kit.user())
    kit.app.edit_message(tree_id=t, message_id=a, text="third", actor=kit.user())
    edits = of(CT.MessageEdited, kit.events(t))
    assert [(e.text, e.revision) for e in edits] == [("second", 1), ("third", 2)]
    assert [e.text for e in of(CT.ReplyAdded, kit.events(t))] == ["first"]
    m = kit.message(t, a)
    assert (m.text, m.edited, m.revision) == ("third", True, 2)
    with kit.refused(E.TASK_MESSAGE_TEXT_EMPTY, t):
        kit.app.edit_message(tree_id=t, message_id=a, text=" ", actor=kit.user())
    kit.app.delete_message(tree_id=t, message_id=a, actor=kit.user())
    with kit.refused(E.MESSAGE_DELETED, t):
        kit.app.edit_message(tree_id=t, message_id=a, text="fourth", actor=kit.user())


def emoji(kit, t, m, actor, name, op="toggle"):
    v = kit.version(t)
    kit.app.toggle_emoji(tree_id=t, message_id=m, emoji=name, actor=actor, op=op)
    return [(e.emoji, e.added) for e in kit.events(t, v)]


def test_emoji_toggle_add_remove(kit):
    t = kit.prompt()
    fan = kit.user()
    assert emoji(kit, t, t, fan, "heart_eyes") == [("heart_eyes", True)]
    assert emoji(kit, t, t, fan, "heart_eyes") == [("heart_eyes", False)]
    assert emoji(kit, t, t, fan, "clap", "add") == [("clap", True)]
    assert emoji(kit, t, t, fan, "clap", "add") == []
    assert emoji(kit, t, t, fan, "rofl", "remove") == []
    assert kit.message(t, t).emoji_counts() == {"clap": 1}


def test_thumbs_are_exclusive_and_ignored_on_own_message(kit):
    author, fan = kit.user(), kit.user()
    t = kit.prompt(author)
    assert emoji(kit, t, t, fan, "+1") == [("+1", True)]
    assert emoji(kit, t, t, fan, "-1") == [("+1", False), ("-1", True)]
    assert emoji(kit, t, t, author, "+1") == []
    assert kit.message(t, t).emoji_counts() == {"-1": 1}


@pytest.mark.parametrize(
    "name, op", [("sparkles", "toggle"), ("_skip_reply", "add"), ("+1", "flip")]
)
def test_unknown_emoji_or_op(kit, name, op):
    t = kit.prompt()
    with kit.refused(E.EMOJI_OP_UNSUPPORTED, t):
        kit.app.toggle_emoji(tree_id=t, message_id=t, emoji=name, actor=kit.user(), op=op)


# ================================================================== auto-moderation
# (moderation without a moderator: red flags and reply skips)
def _flag(kit, t, m, how):
    if how == "emoji":
        kit.app.toggle_emoji(tree_id=t, message_id=m, emoji="red_flag", actor=kit.user())
    else:
        kit.app.submit_labels(
            actor=kit.user(), tree_id=t, message_id=m, labels={"spam": 1.0}, kind="report"
        )


@pytest.mark.parametrize("how", ["emoji", "report"])
@pytest.mark.parametrize("before", [S.INITIAL_PROMPT_REVIEW, S.GROWING])
def test_red_flags_on_root_abort_the_tree(kit, before, how):
    t = kit.tree_in(before)
    for _ in range(kit.config.auto_mod_red_flags - 1):
        _flag(kit, t, t, how)
    assert kit.state(t) is before
    v = kit.version(t)
    _flag(kit, t, t, how)
    (move,) = of(CT.StateChanged, kit.events(t, v))
    assert (move.from_state, move.to_state, move.reason) == (
        before,
        S.ABORTED_LOW_GRADE,
        "auto_mod_red_flags",
    )


def test_red_flags_on_reply_delete_its_subtree(kit):
    t = kit.growing_tree(goal_tree_size=10)
    a = kit.accepted_reply(t, t)
    p = kit.reply(t, a)
    for _ in range(3):
        _flag(kit, t, a, "emoji")
    v = kit.version(t)
    _flag(kit, t, a, "emoji")
    (deleted,) = of(CT.MessageDeleted, kit.events(t, v))
    assert set(deleted.message_ids) == {a, p} and deleted.reason == "auto_mod_red_flags"
    tree = kit.tree(t)
    assert tree.messages[a].deleted and tree.messages[p].deleted and not tree.root.deleted
    assert tree.state is S.GROWING


def test_reply_skips_halt_the_tree(make_kit):
    kit = make_kit(auto_mod_max_skip_reply=2)
    t = kit.growing_tree()
    for _k in range(2):
        user = kit.user()
        task = kit.issue(user, "assistant_reply", tree_id=t, message_id=t)
        v = kit.version(t)
        kit.app.nack_task(user_id=user.user_id, task_id=task.id)
    halted = of(CT.TreeHalted, kit.events(t, v))
    assert [(e.from_state, e.reason) for e in halted] == [(S.GROWING, "auto_mod_skip_reply")]
    assert kit.state(t) is S.HALTED_BY_MODERATOR
    assert kit.message(t, t).emoji_count("_skip_reply") == 2


def test_auto_moderation_can_be_disabled(make_kit):
    kit = make_kit(auto_mod_enabled=False, auto_mod_max_skip_reply=1)
    t = kit.growing_tree(goal_tree_size=10)
    a = kit.accepted_reply(t, t)
    for _ in range(5):
        _flag(kit, t, t, "emoji")
        _flag(kit, t, a, "emoji")
    user = kit.user()
    task = kit.issue(user, "assistant_reply", tree_id=t, message_id=t)
    kit.app.nack_task(user_id=user.user_id, task_id=task.id)
    tree = kit.tree(t)
    assert tree.state is S.GROWING and not tree.messages[a].deleted
    assert tree.root.emoji_count("red_flag") == 5 and tree.root.emoji_count("_skip_reply") == 1


# ================================================================== state machine
def test_every_state_move_of_a_lifecycle_is_allowed(kit, monkeypatch):
    t = kit.growing_tree()
    a1 = kit.accepted_reply(t, t)
    kit.app.halt_tree(tree_id=t, actor=kit.user())
    kit.app.resume_tree(tree_id=t, actor=kit.user())
    a2 = kit.accepted_reply(t, t)
    kit.app.halt_tree(tree_id=t, actor=kit.user())
    kit.app.resume_tree(tree_id=t, actor=kit.user())
    monkeypatch.setattr(domain.model.tree_rules, "consensus", lambda r: 1 / 0)
    for _ in range(3):
        kit.rank(t, t, [a1, a2])
    monkeypatch.undo()
    kit.app.retry_scoring(tree_id=t)
    aborted = kit.prompt()
    kit.review(aborted, aborted, spam_votes=2)
    flagged = kit.growing_tree()
    for _ in range(kit.config.auto_mod_red_flags):
        kit.app.toggle_emoji(
            tree_id=flagged, message_id=flagged, emoji="red_flag", actor=kit.user()
        )
    visited = set()
    for tree_id in (t, aborted, flagged):
        events = kit.events(tree_id)
        moves = state_moves(events)
        assert moves[0][0] == events[0].state  # TreeStarted's state starts the chain
        for (_, to), (nxt, _) in zip(moves, moves[1:]):
            assert to == nxt
        assert not set(moves) - ALLOWED_TRANSITIONS, set(moves) - ALLOWED_TRANSITIONS
        visited |= {s for move in moves for s in move}
    assert visited == set(S) - {S.BACKLOG_RANKING}
    assert kit.state(t) is S.READY_FOR_EXPORT


# ================================================================== idempotency and atomicity
def test_same_prompt_request_twice_is_recorded_once(kit):
    author = kit.user()
    first = kit.app.create_prompt(actor=author, text="hello", frontend_message_id="m1")
    second = kit.app.create_prompt(actor=author, text="hello", frontend_message_id="m1")
    assert first.recorded and not second.recorded and second.position is None
    assert first.id == second.id == message_id_for(kit.client_id, "m1")
    assert names(kit.events(first.id)) == ["TreeStarted"]
    with kit.refused(E.MESSAGE_ALREADY_EXISTS, first.id):
        kit.app.create_prompt(actor=author, text="other", frontend_message_id="m1")


def test_same_reply_request_twice_is_recorded_once(kit):
    t = kit.growing_tree()
    author, v = kit.user(), kit.version(t)
    kw = dict(actor=author, tree_id=t, parent_id=t, text="answer", frontend_message_id="r1")
    first, second = kit.app.add_reply(**kw), kit.app.add_reply(**kw)
    assert first.id == second.id and first.recorded and not second.recorded
    assert names(kit.events(t, v)) == ["ReplyAdded"]


def test_task_completion_is_idempotent(kit):
    user = kit.user()
    task = kit.issue(user, "initial_prompt", ack="f1")
    kw = dict(actor=user, text="a prompt", frontend_message_id="f1", task_id=task.id)
    first, second = kit.app.create_prompt(**kw), kit.app.create_prompt(**kw)
    assert first.id == second.id and not second.recorded
    assert names(kit.events(user.user_id)).count("TaskCompleted") == 1


def test_task_and_fact_are_saved_together(kit, monkeypatch):
    t = kit.growing_tree()
    user = kit.user()
    task = kit.issue(user, "assistant_reply", tree_id=t, message_id=t, ack="f1")
    kw = dict(tree_id=t, parent_id=t, author=user, frontend_message_id="f1", task_id=task.id)
    with kit.refused(E.TASK_MESSAGE_TEXT_EMPTY, t, user.user_id):
        kit.reply(text="  ", **kw)
    real = kit.app.recorder.insert_events

    def failing(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(kit.app.recorder, "insert_events", failing)
    tv, uv = kit.version(t), kit.version(user.user_id)
    with pytest.raises(OSError):
        kit.reply(text="an answer", **kw)
    assert (kit.version(t), kit.version(user.user_id)) == (tv, uv)
    assert not kit.app.get_user(user.user_id).task(task.id).done
    assert kit.tree(t).root.children == [] and kit.tree(t).version == tv
    monkeypatch.setattr(kit.app.recorder, "insert_events", real)
    reply = kit.reply(text="an answer", **kw)
    assert kit.app.get_user(user.user_id).task(task.id).result_id == reply
    assert kit.tree(t).root.children == [reply]
    last = kit.app.recorder.max_notification_id()
    logged = kit.app.recorder.select_notifications(start=last - 2, limit=3)
    assert {n.topic.rsplit(".", 1)[-1] for n in logged} == {
        "ReplyAdded",
        "MessageIndexed",
        "TaskCompleted",
    }


# ================================================================== reading the past
def test_get_tree_at_a_version_or_moment(kit):
    t = kit.growing_tree()
    a = kit.reply(t, t)
    events = kit.events(t)
    started = kit.app.get_tree(t, version=1)
    assert started.state is S.INITIAL_PROMPT_REVIEW and started.root.review_count == 0
    before_reply = kit.app.get_tree(t, version=events[-1].originator_version - 1)
    assert before_reply.state is S.GROWING and a not in before_reply.messages
    at = events[2]
    past = kit.app.get_tree(t, as_of=at.timestamp)
    assert past.version == at.originator_version and past.root.review_count == 2
    with kit.refused(E.NO_MESSAGE_TREE_FOUND):
        kit.app.get_tree(t, as_of=events[0].timestamp.replace(year=2000))
    copy = kit.tree(t)
    copy.messages.clear()
    assert a in kit.tree(t).messages  # readers get a private copy


# ================================================================== clients and ids
def test_api_client_key_is_stored_only_hashed(kit):
    client_id, key = kit.app.register_client(name="web", trusted=True)
    assert kit.app.register_client(name="web", api_key=key) == (client_id, key)
    assert names(kit.events(client_id)) == ["Registered"]
    client = kit.app.authenticate(key)
    assert client is not None and client.id == client_id and client.trusted
    assert kit.app.authenticate(key + "x") is None and kit.app.authenticate("") is None
    stored = kit.app.recorder.select_notifications(start=1, limit=10_000)
    assert stored and not any(key.encode() in n.state for n in stored)
    assert not any(kit.api_key.encode() in n.state for n in stored)
    kit.app.change_client_access(client_id, enabled=False)
    assert kit.app.authenticate(key) is None


def script(kit: Kit) -> list:
    author = kit.user("ann")
    t = kit.app.create_prompt(actor=author, text="hello", frontend_message_id="p").id
    kit.review(t, t)
    kit.app.activate_tree(tree_id=t)
    reply = kit.app.add_reply(
        actor=kit.user("bob"), tree_id=t, parent_id=t, text="hi", frontend_message_id="r"
    ).id
    task = kit.issue(author, "label_assistant_reply", tree_id=t, message_id=reply)
    # task ids are random on purpose (issue 13: another client must not guess them)
    assert task.id.version == 4
    return [kit.client_id, author.user_id, t, reply]


def test_ids_are_deterministic():
    def fresh() -> Kit:
        clock = Clock()
        return Kit(DataEngine(config=small_config(), clock=clock), clock, api_key="k" * 64)

    assert script(fresh()) == script(fresh())
    assert message_id_for(uuid4(), "p") != message_id_for(uuid4(), "p")


# ================================================================== SQLite store
def test_sqlite_store_is_durable(tmp_path):
    app = open_app(tmp_path, config=small_config(), clock=Clock())
    kit = Kit(app, app.clock)
    t = kit.growing_tree()
    user = kit.user()
    task = kit.issue(user, "assistant_reply", tree_id=t, message_id=t, ack="f1")
    reply = kit.reply(t, t, user, frontend_message_id="f1", task_id=task.id)
    tree, tasks = kit.tree(t).as_dict(), app.get_user(user.user_id).tasks
    app.close()
    reopened = open_app(tmp_path, config=small_config(), clock=Clock())
    assert reopened.get_tree(t).as_dict() == tree
    assert reopened.get_user(user.user_id).task(task.id).result_id == reply
    assert tasks[task.id].result_id == reply
    assert reopened.authenticate(kit.api_key).id == kit.client_id
    reopened.close()


def test_sqlite_version_conflict_between_apps_is_retried(tmp_path):
    app_a = open_app(tmp_path, config=small_config(), clock=Clock())
    kit = Kit(app_a, app_a.clock)
    t = kit.growing_tree()
    app_b = open_app(tmp_path, config=small_config(), clock=Clock())
    assert app_b.get_tree(t).version == app_a.get_tree(t).version  # both cache it now
    first = kit.reply(t, t)
    saves = []
    real_save = app_b.save
    app_b.save = lambda *a, **kw: saves.append(a) or real_save(*a, **kw)
    second = app_b.add_reply(
        actor=Actor(uuid4(), kit.client_id), tree_id=t, parent_id=t, text="from b"
    ).id
    assert len(saves) == 2  # the stale cached copy conflicted once, the retry went through
    seen_by_b = app_b.get_tree(t)
    assert seen_by_b.root.children == [first, second]
    assert [e.originator_version for e in app_a.events.get(t)] == list(
        range(1, seen_by_b.version + 1)
    )
    app_a.close()
    app_b.close()
