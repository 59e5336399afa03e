"""The msgspec event codec: exact round trips, type checks on decode, upcasting."""

from __future__ import annotations

from uuid import uuid4

import msgspec
import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from api.storage.codec import MsgspecMapper
from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.tree import ConversationTree

CONFIG = TreeConfig(goal_tree_size=3, min_goal_tree_size=1)


def _lifecycle_events() -> list:
    users = [Actor(uuid4(), uuid4()) for _ in range(8)]
    tree = ConversationTree.start(
        message_id=uuid4(), text="Why is the sky blue?", lang="en", actor=users[0], config=CONFIG
    )
    for u in users[1:4]:
        tree.submit_labels(
            message_id=tree.id, labels={"spam": 0.0, "quality": 0.75}, actor=u, config=CONFIG
        )
    tree.activate(config=CONFIG)
    replies = [
        tree.add_reply(
            message_id=uuid4(),
            parent_id=tree.id,
            text=f"Rayleigh {i}",
            actor=users[i],
            config=CONFIG,
            model_name="m" if i else None,
            synthetic=bool(i),
        )
        for i in (1, 2)
    ]
    for m in replies:
        for u in users[4:7]:
            tree.submit_labels(message_id=m.id, labels={"spam": 0.0}, actor=u, config=CONFIG)
    for u in users[4:7]:
        tree.submit_ranking(
            parent_id=tree.id, ranked_message_ids=[r.id for r in replies], actor=u, config=CONFIG
        )
    tree.toggle_emoji(message_id=replies[0].id, emoji="+1", actor=users[7], config=CONFIG)
    tree.edit_message(message_id=replies[0].id, text="edited", actor=users[0], config=CONFIG)
    tree.delete_message(message_id=replies[1].id, actor=users[0], config=CONFIG)
    tree.undelete_message(message_id=replies[1].id, actor=users[0], config=CONFIG)
    return tree.collect_events()


def test_every_tree_event_round_trips_exactly():
    mapper = MsgspecMapper(transcoder=None)
    events = _lifecycle_events()
    names = {type(e).__name__ for e in events}
    assert {
        "TreeStarted",
        "ReplyAdded",
        "LabelsSubmitted",
        "ReviewDecided",
        "RankingSubmitted",
        "StateChanged",
        "TreeScored",
        "EmojiToggled",
        "MessageEdited",
        "MessageDeleted",
        "MessageUndeleted",
    } <= names
    for event in events:
        stored = mapper.to_stored_event(event)
        assert stored.topic.startswith("domain.tree:ConversationTree.")
        decoded = mapper.to_domain_event(stored)
        assert decoded == event
        assert type(decoded) is type(event)


def test_replaying_decoded_events_rebuilds_the_tree():
    mapper = MsgspecMapper(transcoder=None)
    events = _lifecycle_events()
    tree = None
    for event in events:
        tree = mapper.to_domain_event(mapper.to_stored_event(event)).mutate(tree)
    assert tree.state.value == "ready_for_export"
    ranks = sorted(m.rank for m in tree.messages.values() if m.rank is not None)
    assert ranks == [0, 1]


def test_decode_rejects_state_of_the_wrong_type():
    mapper = MsgspecMapper(transcoder=None)
    event = _lifecycle_events()[0]
    stored = mapper.to_stored_event(event)
    state = msgspec.json.decode(stored.state)
    state["goal_tree_size"] = "twelve"
    bad = StoredEvent(
        originator_id=stored.originator_id,
        originator_version=1,
        topic=stored.topic,
        state=msgspec.json.encode(state),
    )
    with pytest.raises(msgspec.ValidationError):
        mapper.to_domain_event(bad)


class Widget(Aggregate):
    class Named(Aggregate.Event):
        name: str
        colour: str

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict) -> None:
            state["colour"] = "unknown"


def test_class_version_is_stored_and_old_events_are_upcast():
    mapper = MsgspecMapper(transcoder=None)
    widget_id = uuid4()
    topic = f"{__name__}:Widget.Named"
    v1_state = msgspec.json.encode({"timestamp": "2026-01-01T00:00:00+00:00", "name": "w"})
    old = mapper.to_domain_event(
        StoredEvent(originator_id=widget_id, originator_version=2, topic=topic, state=v1_state)
    )
    assert (old.name, old.colour) == ("w", "unknown")
    stored = mapper.to_stored_event(old)
    assert msgspec.json.decode(stored.state)["class_version"] == 2
    assert mapper.to_domain_event(stored) == old
