"""Purges as events (issue 16): the pure selection rule, the aggregate's MessagesPurged,
and the datasets' replay of it (a purged message's text reaches no training row)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from api.bootstrap import load_config, open_app
from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.errors import MessageDeletedError
from domain.model.tree import ConversationTree
from domain.model.tree_purge import hide_purged, purge_selection, purged_in
from domain.model.tree_seed import plan_seed, record_seed
from projections.datasets.replay import replay

CLIENT = uuid4()
CONFIG = TreeConfig()
ALICE, BOB = Actor(uuid4(), CLIENT), Actor(uuid4(), CLIENT)
MODERATOR = Actor(uuid4(), CLIENT)


SEED = [
    {
        "task_message_id": "t",
        "user_message_id": "x0",
        "parent_message_id": None,
        "role": "prompter",
        "text": "q",
    },
    {
        "task_message_id": "t",
        "user_message_id": "x1",
        "parent_message_id": "x0",
        "role": "assistant",
        "text": "a",
    },
]


def tree_of_alice() -> ConversationTree:
    """prompt (Alice) -> a1 (Alice) -> p1 (Bob) -> a2 (Alice); prompt -> a3 (Bob)."""
    items = [
        {"task_message_id": "t", "user_message_id": "root", "parent_message_id": None},
        {"task_message_id": "t", "user_message_id": "a1", "parent_message_id": "root"},
        {"task_message_id": "t", "user_message_id": "p1", "parent_message_id": "a1"},
        {"task_message_id": "t", "user_message_id": "a2", "parent_message_id": "p1"},
        {"task_message_id": "t", "user_message_id": "a3", "parent_message_id": "root"},
    ]
    for item, role in zip(items, ["prompter", "assistant", "prompter", "assistant", "assistant"]):
        item.update(role=role, text=f"text of {item['user_message_id']}")
    (seed,) = plan_seed(items, CLIENT)
    tree = record_seed(ConversationTree, seed, ALICE, CONFIG)
    for message in tree.messages.values():  # authors as the docstring says
        if message.frontend_message_id in ("p1", "a3"):
            message.user_id = BOB.user_id
    return tree


def ids(tree: ConversationTree, *names: str) -> list[UUID]:
    by_name = {m.frontend_message_id: m.id for m in tree.messages.values()}
    return [by_name[n] for n in names]


def test_selection_takes_the_replies_below_and_keeps_prompts_unless_asked() -> None:
    tree = tree_of_alice()
    user = ALICE.user_id
    assert purge_selection(tree, user, include_prompts=False) == ids(tree, "a1", "p1", "a2")
    everything = purge_selection(tree, user, include_prompts=True)
    assert sorted(everything) == sorted(ids(tree, "root", "a1", "p1", "a2", "a3"))
    assert purge_selection(tree, BOB.user_id, include_prompts=False) == ids(tree, "p1", "a2", "a3")
    later = datetime.now(UTC) + timedelta(days=1)
    assert purge_selection(tree, user, include_prompts=True, min_date=later) == []
    assert purge_selection(tree, user, include_prompts=True, max_date=later) == everything


def test_a_purge_is_an_event_that_an_undelete_cannot_take_back() -> None:
    tree = tree_of_alice()
    tree.collect_events()
    chosen = purge_selection(tree, BOB.user_id, include_prompts=False)
    assert tree.purge_messages(message_ids=chosen, actor=MODERATOR, config=CONFIG) == chosen
    events = tree.collect_events()
    purge = next(e for e in events if isinstance(e, ConversationTree.MessagesPurged))
    assert purge.message_ids == chosen and purge.user_id == MODERATOR.user_id
    for message_id in chosen:
        message = tree.messages[message_id]
        assert message.deleted and message.purged and message.text == ""
    assert purged_in(events) == set(chosen)
    with pytest.raises(MessageDeletedError):
        tree.undelete_message(message_id=chosen[0], actor=MODERATOR, config=CONFIG)
    # purging again records nothing
    assert tree.purge_messages(message_ids=chosen, actor=MODERATOR, config=CONFIG) == []
    assert tree.collect_events() == []
    added = next(
        e
        for e in record_seed(
            ConversationTree, plan_seed(SEED, CLIENT)[0], ALICE, CONFIG
        ).collect_events()
        if isinstance(e, ConversationTree.ReplyAdded)
    )
    shown = {"text": "secret"}
    assert hide_purged(added, shown, {added.message_id})["text"] == ""
    assert hide_purged(added, shown, set(chosen)) == shown


def test_the_datasets_replay_hides_purged_text(tmp_path: Path) -> None:
    tree = tree_of_alice()
    tree.purge_messages(
        message_ids=purge_selection(tree, BOB.user_id, include_prompts=False),
        actor=MODERATOR,
        config=CONFIG,
    )
    app = open_app(tmp_path, load_config(tmp_path))
    try:
        stored = [app.mapper.to_stored_event(e) for e in tree.collect_events()]
    finally:
        app.close()
    rows = replay(tree.id, [(s.topic, s.state) for s in stored])
    texts = {m.text for m in rows.messages.values() if not m.deleted}
    assert texts == {"text of root", "text of a1"}
    assert all(m.text == "" for m in rows.messages.values() if m.deleted)
