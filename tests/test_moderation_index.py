"""Moderation commands on a message find its tree in the message index (the log), so they
work before any read model has seen the message; an unknown message records nothing."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.model.errors import MessageNotFoundError
from domain.model.tree import ConversationTree as CT


def test_message_commands_need_no_tree_id(kit) -> None:
    # the kit's application runs no projection: only the log can name the tree
    tree_id = kit.growing_tree()
    reply = kit.reply(tree_id, tree_id)
    mod = kit.user()
    steps = [
        (kit.app.edit_message, {"text": "edited text"}, CT.MessageEdited),
        (kit.app.toggle_emoji, {"emoji": "+1"}, None),
        (kit.app.delete_message, {}, CT.MessageDeleted),
        (kit.app.undelete_message, {}, CT.MessageUndeleted),
    ]
    for command, kwargs, recorded in steps:
        before = kit.version(tree_id)
        assert command(message_id=reply, actor=mod, **kwargs) is not None
        new = kit.events(tree_id, before)
        assert new, command.__name__
        if recorded is not None:
            assert type(new[-1]) is recorded
    message = kit.message(tree_id, reply)
    assert message.text == "edited text" and not message.deleted


def test_an_unknown_message_is_not_found_and_nothing_is_recorded(kit) -> None:
    tree_id = kit.growing_tree()
    before = kit.version(tree_id)
    for command in (kit.app.delete_message, kit.app.undelete_message):
        with pytest.raises(MessageNotFoundError):
            command(message_id=uuid4(), actor=kit.user())
    with pytest.raises(MessageNotFoundError):
        kit.app.toggle_emoji(message_id=uuid4(), emoji="+1", actor=kit.user())
    assert kit.version(tree_id) == before
