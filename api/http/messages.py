"""Messages and trees: OA's /messages endpoints from the read model, moderation through
DataEngine commands, and (beyond OA) a tree's event history and past versions.

Reads come from the ``messages``/``trees`` read-model tables through aiosqlite, on the
event loop; a moderation command runs in the threadpool and waits for its log position
before answering, so a following read shows its effect. Untrusted clients may only read
and act on messages written through themselves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from api.http import auth
from api.http import schemas as s
from api.http.errors import validation
from api.http.routing import Api, Call
from domain.model.actor import Actor
from domain.model.as_of import parse_as_of
from domain.model.errors import ErrorCode, MessageNotFoundError, TreeNotFoundError
from domain.model.states import ACTIVE_STATES

MESSAGE_ID = ErrorCode.MESSAGE_NOT_FOUND
COLUMNS = (
    "message_id, tree_id, parent_id, role, lang, text, user_id, client_id,"
    " frontend_message_id, created_at, synthetic, model_name, review_count, review_result,"
    " ranking_count, rank, emojis, deleted, edited"
)
_ACTIVE = frozenset(state.value for state in ACTIVE_STATES)


def _time(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _message(row: tuple, viewer: UUID | None, mine: dict[str, list[str]]) -> s.Message:
    emojis = {k: v for k, v in json.loads(row[16]).items() if not k.startswith("_")}
    return s.Message(
        id=UUID(row[0]),
        message_tree_id=UUID(row[1]),
        parent_id=UUID(row[2]) if row[2] else None,
        is_assistant=row[3] == "assistant",
        lang=row[4],
        text=row[5],
        user_id=UUID(row[6]) if row[6] else None,
        frontend_message_id=row[8],
        created_date=_time(row[9]),
        synthetic=bool(row[10]),
        model_name=row[11],
        review_count=row[12],
        review_result=None if row[13] is None else bool(row[13]),
        ranking_count=row[14],
        rank=row[15],
        emojis=emojis,
        user_emojis=sorted(mine.get(row[0], [])),
        user_is_author=(row[6] == str(viewer)) if viewer is not None else None,
        deleted=bool(row[17]),
        edited=bool(row[18]),
    )


def _viewer(call: Call) -> UUID | None:
    actor = call.header_actor(required=False)
    return actor.user_id if actor is not None else None


async def _rows(call: Call, where: str, params: tuple) -> list[tuple]:
    return await call.rows(
        f"SELECT {COLUMNS} FROM messages WHERE {where} ORDER BY created_at, message_id", params
    )


async def to_messages(call: Call, rows: list[tuple]) -> list[s.Message]:
    viewer = _viewer(call)
    mine: dict[str, list[str]] = {}
    if viewer is not None and rows:
        ids = [r[0] for r in rows]
        for message_id, emoji in await call.rows(
            f"SELECT message_id, emoji FROM message_emojis WHERE user_id = ? AND message_id IN"
            f" ({','.join('?' * len(ids))})",
            [str(viewer), *ids],
        ):
            mine.setdefault(message_id, []).append(emoji)
    return [_message(r, viewer, mine) for r in rows]


async def _target(call: Call) -> tuple:
    """The path's message row, after the owner check; 404 if unknown.

    ``/messages/{message_id}`` names it by backend id; ``/frontend_messages/{frontend_id}``
    by the id the calling client gave it, so it can only name that client's messages."""
    frontend_id = call.request.path_params.get("frontend_id")
    if frontend_id is not None:
        where, params = (
            "client_id = ? AND frontend_message_id = ?",
            (str(call.api_client.id), frontend_id),
        )
        what = f"message with frontend id {frontend_id!r}"
    else:
        message_id = call.path_id("message_id", MESSAGE_ID, "message")
        where, params, what = "message_id = ?", (str(message_id),), f"message {message_id}"
    rows = await _rows(call, where, params)
    if not rows:
        await call.service.catch_up_async(await call.service.head_async())
        rows = await _rows(call, where, params)
    if not rows:
        raise MessageNotFoundError(f"{what} not found")
    auth.check_owner(call.api_client, rows[0][7])
    return rows[0]


async def get_message(call: Call) -> Any:
    return (await to_messages(call, [await _target(call)]))[0]


async def conversation(call: Call) -> Any:
    row = await _target(call)
    by_id = {r[0]: r for r in await _rows(call, "tree_id = ?", (row[1],))}
    path, current = [], row[0]
    while current is not None:
        path.append(by_id[current])
        current = by_id[current][2]
    found = await to_messages(call, path[::-1])
    return s.Conversation(
        messages=[
            s.ConversationMessage(
                id=m.id,
                user_id=m.user_id,
                frontend_message_id=m.frontend_message_id,
                text=m.text,
                lang=m.lang,
                is_assistant=m.is_assistant,
                emojis=m.emojis,
                user_emojis=m.user_emojis,
                user_is_author=m.user_is_author,
                synthetic=m.synthetic,
            )
            for m in found
        ]
    )


async def tree(call: Call) -> Any:
    row = await _target(call)
    include_spam, include_deleted = (
        call.flag("include_spam", True),
        call.flag("include_deleted", False),
    )
    where = (
        "tree_id = ?"
        + ("" if include_deleted else " AND deleted = 0")
        + ("" if include_spam else " AND (review_result IS NULL OR review_result = 1)")
    )
    return s.MessageTree(
        id=UUID(row[1]), messages=await to_messages(call, await _rows(call, where, (row[1],)))
    )


async def children(call: Call) -> Any:
    row = await _target(call)
    return await to_messages(call, await _rows(call, "parent_id = ?", (row[0],)))


async def descendants(call: Call) -> Any:
    row = await _target(call)
    by_parent: dict[str | None, list[tuple]] = {}
    for r in await _rows(call, "tree_id = ? AND deleted = 0", (row[1],)):
        by_parent.setdefault(r[2], []).append(r)
    found, todo = [], [row[0]]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return s.MessageTree(id=UUID(row[0]), messages=await to_messages(call, found))


async def _tree_state(call: Call, tree_id: str) -> s.MessageTreeState:
    row = await call.row(
        "SELECT state, goal_tree_size, max_depth, max_children_count, origin FROM trees"
        " WHERE tree_id = ?",
        (tree_id,),
    )
    if row is None:
        raise TreeNotFoundError(f"tree {tree_id} not found")
    return s.MessageTreeState(
        message_tree_id=UUID(tree_id),
        state=row[0],
        goal_tree_size=row[1],
        max_depth=row[2],
        max_children_count=row[3],
        active=row[0] in _ACTIVE,
        origin=row[4],
    )


async def tree_state(call: Call) -> Any:
    return await _tree_state(call, (await _target(call))[1])


def _actor(call: Call) -> Actor:
    return call.header_actor(required=False) or Actor(None, call.api_client.id)


async def put_tree_state(call: Call) -> Any:
    row = await _target(call)
    halt = call.flag("halt", True)
    tree_id, app = UUID(row[1]), call.service.app
    command = app.halt_tree if halt else app.resume_tree
    await call.service.catch_up_async(
        await call.blocking(command, tree_id=tree_id, actor=_actor(call))
    )
    return await _tree_state(call, row[1])


async def _moderate(call: Call, command: str, actor: Actor, **kwargs: Any) -> tuple:
    row = await _target(call)
    position = await call.blocking(
        getattr(call.service.app, command),
        tree_id=UUID(row[1]),
        message_id=UUID(row[0]),
        actor=actor,
        **kwargs,
    )
    await call.service.catch_up_async(position)
    return row


async def delete(call: Call) -> None:
    await _moderate(call, "delete_message", _actor(call))


async def undelete(call: Call) -> None:
    await _moderate(call, "undelete_message", _actor(call))


async def edit(call: Call) -> None:
    body: s.MessageEditRequest = call.json(s.MessageEditRequest)
    await _moderate(
        call, "edit_message", await call.blocking(call.user, body.user), text=body.new_content
    )


async def emoji(call: Call) -> Any:
    body: s.MessageEmojiRequest = call.json(s.MessageEmojiRequest)
    actor = await call.blocking(call.user, body.user)
    row = await _moderate(call, "toggle_emoji", actor, emoji=body.emoji, op=body.op)
    found = await _rows(call, "message_id = ?", (row[0],))
    mine = [
        e
        for (e,) in await call.rows(
            "SELECT emoji FROM message_emojis WHERE message_id = ? AND user_id = ?",
            (row[0], str(actor.user_id)),
        )
    ]
    return _message(found[0], actor.user_id, {row[0]: mine})


# ---------------------------------------------------------------- history (from the log)
async def _tree_events(call: Call, tree_id: UUID) -> list[tuple[int, Any]]:
    """(log position, decoded event) for every event of the tree, oldest first."""
    rows = await call.log_rows(
        "SELECT rowid, originator_version, topic, state FROM stored_events"
        " WHERE originator_id = ? ORDER BY originator_version",
        (tree_id.hex,),
    )
    mapper = call.service.app.mapper
    return [
        (
            r[0],
            mapper.to_domain_event(
                StoredEvent(originator_id=tree_id, originator_version=r[1], topic=r[2], state=r[3])
            ),
        )
        for r in rows
    ]


async def history(call: Call) -> Any:
    row = await _target(call)
    message_id = UUID(row[0])
    revisions = []
    for _, event in await _tree_events(call, UUID(row[1])):
        name = type(event).__name__
        if (name == "TreeStarted" and event.originator_id == message_id) or (
            name == "ReplyAdded" and event.message_id == message_id
        ):
            revisions.append(
                s.MessageRevision(
                    message_id=message_id,
                    revision=0,
                    text=event.text,
                    user_id=event.user_id,
                    created_date=event.timestamp,
                )
            )
        elif name == "MessageEdited" and event.message_id == message_id:
            revisions.append(
                s.MessageRevision(
                    message_id=message_id,
                    revision=event.revision,
                    text=event.text,
                    user_id=event.user_id,
                    created_date=event.timestamp,
                )
            )
    return revisions


_OWN = ("originator_id", "originator_version", "timestamp", "user_id", "client_id")


async def tree_events(call: Call) -> Any:
    tree_id = call.path_id("tree_id", ErrorCode.NO_MESSAGE_TREE_FOUND, "tree")
    found = await _tree_events(call, tree_id)
    if not found:
        raise TreeNotFoundError(f"tree {tree_id} not found")
    return [
        s.TreeEvent(
            position=position,
            version=e.originator_version,
            type=type(e).__name__,
            timestamp=e.timestamp,
            user_id=e.user_id,
            client_id=e.client_id,
            data={k: v for k, v in vars(e).items() if k not in _OWN},
        )
        for position, e in found
    ]


def tree_at(call: Call) -> Any:
    tree_id = call.path_id("tree_id", ErrorCode.NO_MESSAGE_TREE_FOUND, "tree")
    raw = call.query("as_of")
    app = call.service.app
    if raw is None:
        return app.get_tree(tree_id).as_dict()
    try:
        version, moment = parse_as_of(raw)
    except ValueError:
        raise validation(f"as_of must be a version number or an ISO time, not {raw!r}") from None
    return app.get_tree(tree_id, version=version, as_of=moment).as_dict()


def register(api: Api) -> None:
    m = "/api/v1/messages/{message_id}"
    add = api.add
    add("GET", m, get_message, response=s.Message, summary="a message", tag="messages")
    add(
        "GET",
        m + "/conversation",
        conversation,
        response=s.Conversation,
        summary="the path from the root to this message",
        tag="messages",
    )
    add(
        "GET",
        m + "/tree",
        tree,
        response=s.MessageTree,
        tag="messages",
        query={"include_spam": "default true", "include_deleted": "default false"},
        summary="the message's whole tree",
    )
    add(
        "GET",
        m + "/tree/state",
        tree_state,
        response=s.MessageTreeState,
        tag="messages",
        summary="the state of the message's tree",
    )
    add(
        "PUT",
        m + "/tree/state",
        put_tree_state,
        access="trusted",
        response=s.MessageTreeState,
        query={"halt": "true halts, false resumes"},
        summary="halt or resume a tree",
        tag="messages",
    )
    add(
        "GET",
        m + "/children",
        children,
        response=list[s.Message],
        summary="direct replies",
        tag="messages",
    )
    add(
        "GET",
        m + "/descendants",
        descendants,
        response=s.MessageTree,
        summary="every undeleted message below this one",
        tag="messages",
    )
    add(
        "DELETE",
        m,
        delete,
        access="trusted",
        status=204,
        tag="messages",
        summary="soft-delete the message and its descendants",
    )
    add(
        "PUT",
        m + "/undelete",
        undelete,
        access="trusted",
        status=204,
        tag="messages",
        summary="undelete the message and its ancestors",
    )
    add(
        "POST",
        m + "/edit",
        edit,
        access="trusted",
        body=s.MessageEditRequest,
        status=204,
        summary="edit a message's text (revisions are kept)",
        tag="messages",
    )
    add(
        "GET",
        m + "/history",
        history,
        access="trusted",
        response=list[s.MessageRevision],
        summary="a message's revisions",
        tag="messages",
    )
    add(
        "POST",
        m + "/emoji",
        emoji,
        body=s.MessageEmojiRequest,
        response=s.Message,
        status=202,
        summary="add, remove or toggle an emoji",
        tag="messages",
    )
    f = "/api/v1/frontend_messages/{frontend_id}"
    for suffix, handler, response, query, summary in (
        ("", get_message, s.Message, {}, "a message, by the calling client's id for it"),
        (
            "/conversation",
            conversation,
            s.Conversation,
            {},
            "the path from the root to the message (by frontend id)",
        ),
        (
            "/tree",
            tree,
            s.MessageTree,
            {"include_spam": "default true", "include_deleted": "default false"},
            "the message's whole tree (by frontend id)",
        ),
        (
            "/tree/state",
            tree_state,
            s.MessageTreeState,
            {},
            "the state of the message's tree (by frontend id)",
        ),
        ("/children", children, list[s.Message], {}, "direct replies (by frontend id)"),
        (
            "/descendants",
            descendants,
            s.MessageTree,
            {},
            "every undeleted message below this one (by frontend id)",
        ),
    ):
        add(
            "GET",
            f + suffix,
            handler,
            response=response,
            query=query,
            summary=summary,
            tag="frontend_messages",
        )
    add(
        "GET",
        "/api/v1/trees/{tree_id}",
        tree_at,
        response=dict,
        tag="trees",
        query={"as_of": "a version number or an ISO time"},
        summary="the tree now or as it was (beyond OA)",
    )
    add(
        "GET",
        "/api/v1/trees/{tree_id}/events",
        tree_events,
        response=list[s.TreeEvent],
        tag="trees",
        summary="the tree's event history with log positions (beyond OA)",
    )
