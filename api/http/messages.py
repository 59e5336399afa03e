"""Messages and trees: OA's /messages and /frontend_messages reads, from the read model.

Reads come from the ``messages``/``trees`` read-model tables through aiosqlite, on the
event loop. Untrusted clients may only read messages written through themselves.
Moderation is in api.http.message_moderation, a tree's history in api.http.tree_history.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from api.http import auth
from api.http import schemas as s
from api.http.routing import Api, Call
from domain.model.errors import ErrorCode, MessageNotFoundError, TreeNotFoundError
from domain.model.states import ACTIVE_STATES
from projections.queries import messages as q
from projections.queries import trees as tq
from projections.queries.messages import COLUMNS as COLUMNS  # api.http.oa_extras uses it

MESSAGE_ID = ErrorCode.MESSAGE_NOT_FOUND
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


async def _rows(call: Call, which: str, params: tuple) -> list[tuple]:
    """Message rows under one of projections.queries.messages.WHERE's conditions."""
    return await call.read(q.rows_where, which, params)


async def to_messages(call: Call, rows: list[tuple]) -> list[s.Message]:
    viewer = _viewer(call)
    mine: dict[str, list[str]] = {}
    if viewer is not None and rows:
        ids = [r[0] for r in rows]
        for message_id, emoji in await call.read(q.user_emojis, str(viewer), ids):
            mine.setdefault(message_id, []).append(emoji)
    return [_message(r, viewer, mine) for r in rows]


def as_conversation(found: list[s.Message]) -> s.Conversation:
    """Messages (root first) as OA's Conversation."""
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


async def _target(call: Call) -> tuple:
    """The path's message row, after the owner check; 404 if unknown.

    ``/messages/{message_id}`` names it by backend id; ``/frontend_messages/{frontend_id}``
    by the id the calling client gave it, so it can only name that client's messages."""
    frontend_id = call.request.path_params.get("frontend_id")
    if frontend_id is not None:
        where = "frontend"
        params: tuple[str, ...] = (str(call.api_client.id), frontend_id)
        what = f"message with frontend id {frontend_id!r}"
    else:
        message_id = call.path_id("message_id", MESSAGE_ID, "message")
        where, params, what = "message", (str(message_id),), f"message {message_id}"
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
    by_id = {r[0]: r for r in await _rows(call, "tree", (row[1],))}
    path, current = [], row[0]
    while current is not None:
        path.append(by_id[current])
        current = by_id[current][2]
    found = await to_messages(call, path[::-1])
    return as_conversation(found)


async def tree(call: Call) -> Any:
    row = await _target(call)
    include_spam, include_deleted = (
        call.flag("include_spam", True),
        call.flag("include_deleted", False),
    )
    rows = await call.read(q.tree_rows, row[1], include_deleted, include_spam)
    return s.MessageTree(id=UUID(row[1]), messages=await to_messages(call, rows))


async def children(call: Call) -> Any:
    row = await _target(call)
    return await to_messages(call, await _rows(call, "children", (row[0],)))


async def descendants(call: Call) -> Any:
    row = await _target(call)
    by_parent: dict[str | None, list[tuple]] = {}
    for r in await _rows(call, "tree_undeleted", (row[1],)):
        by_parent.setdefault(r[2], []).append(r)
    found, todo = [], [row[0]]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return s.MessageTree(id=UUID(row[0]), messages=await to_messages(call, found))


async def _tree_state(call: Call, tree_id: str) -> s.MessageTreeState:
    row = await call.read(tq.tree_shape, tree_id)
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


_TREE_QUERY = {"include_spam": "default true", "include_deleted": "default false"}
# (path suffix, handler, answer, query, summary) of the reads, by message id and by frontend id
_READS: tuple[tuple[str, Any, Any, dict[str, str], str], ...] = (
    ("", get_message, s.Message, {}, "a message"),
    ("/conversation", conversation, s.Conversation, {}, "the path from the root to the message"),
    ("/tree", tree, s.MessageTree, _TREE_QUERY, "the message's whole tree"),
    ("/tree/state", tree_state, s.MessageTreeState, {}, "the state of the message's tree"),
    ("/children", children, list[s.Message], {}, "direct replies"),
    ("/descendants", descendants, s.MessageTree, {}, "every undeleted message below this one"),
)


def register(api: Api) -> None:
    for prefix, tag, by in (
        ("/api/v1/messages/{message_id}", "messages", ""),
        ("/api/v1/frontend_messages/{frontend_id}", "frontend_messages", " (by frontend id)"),
    ):
        for suffix, handler, response, query, summary in _READS:
            api.add(
                "GET",
                prefix + suffix,
                handler,
                response=response,
                query=query,
                summary=summary + by,
                tag=tag,
            )
