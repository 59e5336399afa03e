"""The one list of events: EVENTS.md is what the aggregates say, and every topic resolves."""

from __future__ import annotations

from pathlib import Path

from eventsourcing.utils import get_topic, resolve_topic

from domain.model.catalogue import aggregates, catalogue, event_classes, topics_of
from domain.model.tree import ConversationTree
from domain.model.user import User
from projections.catalogue import REGENERATE, render
from projections.store import default_projections

ROOT = Path(__file__).resolve().parent.parent


def test_events_md_is_current() -> None:
    expected = render(catalogue(), default_projections())
    path = ROOT / "EVENTS.md"
    actual = path.read_text(encoding="utf-8") if path.exists() else ""
    assert actual == expected, f"EVENTS.md is stale: regenerate it with `{REGENERATE}`"


def test_every_stored_topic_resolves_to_its_class() -> None:
    for info in catalogue():
        assert resolve_topic(info.topic) is info.event_class
        assert resolve_topic(info.current_topic) is info.event_class
        assert get_topic(info.event_class) == info.topic


def test_the_catalogue_lists_declared_events_only() -> None:
    names = {cls.__qualname__ for cls in event_classes(ConversationTree)}
    assert "ConversationTree.RanksImported" in names
    assert "ConversationTree.TreeHalted" in names  # a subclass of StateChanged is its own event
    # eventsourcing's base Event and its default Created are never stored here
    assert not names & {"ConversationTree.Event", "ConversationTree.Created"}
    assert {cls.__name__ for cls in event_classes(User)} >= {"Registered", "TaskExpired"}
    assert {ConversationTree, User} <= set(aggregates())


def test_fields_are_the_domains_in_declaration_order() -> None:
    info = next(e for e in catalogue() if e.event_class is ConversationTree.MessageEdited)
    assert info.fields == (
        ("user_id", "UUID | None"),
        ("client_id", "UUID | None"),
        ("message_id", "UUID"),
        ("text", "str"),
        ("revision", "int"),
    )
    assert info.class_version == 1


def test_topics_of_gives_stored_then_current() -> None:
    cls = ConversationTree.TreeStarted
    assert topics_of(cls) == (
        "domain.tree:ConversationTree.TreeStarted",
        "domain.model.tree:ConversationTree.TreeStarted",
    )


def test_readme_points_to_events_md() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "EVENTS.md" in readme
