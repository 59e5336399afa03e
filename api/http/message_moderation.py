"""Moderation of messages and trees through DataEngine commands: halt/resume a tree,
delete, undelete, edit, emojis.

A command runs in the threadpool and the answer waits until the read models include
its log position, so a following read shows its effect. The target is found as the
reads find it (api.http.messages), so an untrusted client only acts on its own messages.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from api.http import schemas as s
from api.http.messages import _message, _rows, _target, _tree_state
from api.http.routing import Api, Call
from domain.model.actor import Actor
from projections.queries import messages as q


def _actor(call: Call) -> Actor:
    return call.header_actor(required=False) or Actor(None, call.api_client.id)


async def put_tree_state(call: Call) -> Any:
    row = await _target(call)
    halt = call.flag("halt", True)
    app = call.service.app
    command = app.halt_tree if halt else app.resume_tree

    def act() -> tuple[UUID, int | None]:
        tree_id = app.tree_of_message(UUID(row[0]))  # the message index: from the log
        return tree_id, command(tree_id=tree_id, actor=_actor(call))

    tree_id, position = await call.blocking(act)
    await call.service.catch_up_async(position)
    return await _tree_state(call, str(tree_id))


async def _moderate(
    call: Call, command: str, user: s.User | None, **kwargs: Any
) -> tuple[tuple, Actor]:
    """The command on the path's message, by the body's user (registered with the command:
    a refused request records nothing) or the header's."""
    row = await _target(call)

    def act() -> tuple[Actor, int | None]:
        with call.deferred():
            actor = call.user(user) if user is not None else _actor(call)
            # no tree_id: the command finds the message's tree in the message index
            return actor, getattr(call.service.app, command)(
                message_id=UUID(row[0]), actor=actor, **kwargs
            )

    actor, position = await call.blocking(act)
    await call.service.catch_up_async(position)
    return row, actor


async def delete(call: Call) -> None:
    await _moderate(call, "delete_message", None)


async def undelete(call: Call) -> None:
    await _moderate(call, "undelete_message", None)


async def edit(call: Call) -> None:
    body: s.MessageEditRequest = call.json(s.MessageEditRequest)
    await _moderate(call, "edit_message", body.user, text=body.new_content)


async def emoji(call: Call) -> Any:
    body: s.MessageEmojiRequest = call.json(s.MessageEmojiRequest)
    row, actor = await _moderate(call, "toggle_emoji", body.user, emoji=body.emoji, op=body.op)
    found = await _rows(call, "message", (row[0],))
    mine = await call.read(q.emojis_of, row[0], str(actor.user_id))
    return _message(found[0], actor.user_id, {row[0]: mine})


def register(api: Api) -> None:
    m = "/api/v1/messages/{message_id}"
    trusted: dict[str, Any] = {"access": "trusted", "tag": "messages"}
    api.add(
        "PUT",
        m + "/tree/state",
        put_tree_state,
        response=s.MessageTreeState,
        query={"halt": "true halts, false resumes"},
        summary="halt or resume a tree",
        **trusted,
    )
    api.add(
        "DELETE",
        m,
        delete,
        status=204,
        summary="soft-delete the message and its descendants",
        **trusted,
    )
    api.add(
        "PUT",
        m + "/undelete",
        undelete,
        status=204,
        summary="undelete the message and its ancestors",
        **trusted,
    )
    api.add(
        "POST",
        m + "/edit",
        edit,
        body=s.MessageEditRequest,
        status=204,
        summary="edit a message's text (revisions are kept)",
        **trusted,
    )
    api.add(
        "POST",
        m + "/emoji",
        emoji,
        body=s.MessageEmojiRequest,
        response=s.Message,
        status=202,
        summary="add, remove or toggle an emoji",
        tag="messages",
    )
