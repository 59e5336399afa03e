"""The rest of OA's v1 operations: closing collective tasks, the tree-shape reads, deleting
a user's messages, the deprecated user list and the NextAuth check.

- ``POST /tasks/close``: this server hands out no collective tasks (a request with
  ``collective=true`` is refused), so every task is personal and closing one answers as
  OA's TaskRepository.close_task does for a personal task: 400 TASK_NOT_COLLECTIVE (2106),
  or 404 TASK_NOT_FOUND (2100) when the client has no task acknowledged with that id.
- ``GET /auth/check``: OA decrypts a NextAuth session cookie; this server runs no NextAuth,
  so it answers as OA does to a request without that cookie: 403 "Not authenticated".
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from api.http import auth, users
from api.http import schemas as s
from api.http.errors import HttpError, not_authorized
from api.http.messages import COLUMNS, _target, as_conversation, to_messages
from api.http.routing import Api, Call
from domain.model.actor import Actor
from domain.model.errors import ErrorCode, UserNotFoundError
from projections import oa_queries as q


class TaskClose(msgspec.Struct, kw_only=True):
    message_id: str


def close_task(call: Call) -> Any:
    body: TaskClose = call.json(TaskClose)
    found = q.task_by_frontend_id(call.service.reader(), call.api_client.id, body.message_id)
    if found is None:
        raise HttpError(
            f"Task for frontend_message_id={body.message_id!r} not found",
            ErrorCode.TASK_NOT_FOUND,
            404,
        )
    raise HttpError("This is not a collective task", ErrorCode.TASK_NOT_COLLECTIVE, 400)


async def auth_check(call: Call) -> Any:
    raise not_authorized("Not authenticated: this server runs no NextAuth session check")


async def _messages(call: Call, ids: list[str]) -> list[s.Message]:
    # COLUMNS: the messages row as api.http.messages renders it (message_id first)
    return await to_messages(call, await call.read(q.rows_by_id, COLUMNS, ids))


async def longest_conversation(call: Call) -> Any:
    row = await _target(call)
    found = await _messages(call, await call.read(q.longest_conversation, row[1]))
    return as_conversation(found)


async def max_children(call: Call) -> Any:
    row = await _target(call)
    found = await call.read(q.max_children, row[1])
    if found is None:  # no message of the tree has a reply: the root, alone
        return s.MessageTree(id=UUID(row[1]), messages=[])
    parent_id, children = found
    return s.MessageTree(id=UUID(parent_id), messages=await _messages(call, children))


async def _delete_messages(call: Call, user_id: UUID) -> None:
    if await call.service.find_user_async(user_id) is None:
        raise UserNotFoundError(f"user {user_id} not found")
    messages = await call.read(q.user_messages, user_id)
    actor = call.header_actor(required=False) or Actor(None, call.api_client.id)
    position = await call.blocking(
        call.service.app.delete_user_messages, messages=messages, actor=actor
    )
    await call.service.catch_up_async(position)


async def delete_user_messages(call: Call) -> None:
    await _delete_messages(call, call.path_id("user_id", ErrorCode.USER_NOT_FOUND, "user"))


async def delete_frontend_user_messages(call: Call) -> None:
    params = call.request.path_params
    if params["auth_method"] not in auth.AUTH_METHODS:
        raise UserNotFoundError(f"user {params['auth_method']}:{params['username']} not found")
    user_id = call.service.user_id(call.api_client, params["auth_method"], params["username"])
    await _delete_messages(call, user_id)


def register(api: Api) -> None:
    add = api.add
    add(
        "POST",
        "/api/v1/tasks/close",
        close_task,
        body=TaskClose,
        response=s.TaskDone,
        errors={"400": "not a collective task (2106): none are handed out"},
        summary="close a collective task (none are handed out: answers as OA for a personal task)",
        tag="tasks",
    )
    add(
        "GET",
        "/api/v1/auth/check",
        auth_check,
        access="public",
        response=str,
        summary="NextAuth session check: no NextAuth here, so 403 as OA without a cookie",
        tag="auth",
    )
    _register_reads(api)
    _register_users(api)


def _register_reads(api: Api) -> None:
    add = api.add
    for prefix, tag in (
        ("/api/v1/messages/{message_id}", "messages"),
        ("/api/v1/frontend_messages/{frontend_id}", "frontend_messages"),
    ):
        add(
            "GET",
            prefix + "/longest_conversation_in_tree",
            longest_conversation,
            response=s.Conversation,
            summary="the root-to-leaf path to the tree's deepest message",
            tag=tag,
        )
        add(
            "GET",
            prefix + "/max_children_in_tree",
            max_children,
            response=s.MessageTree,
            summary="the tree's message with the most replies: its id and its replies",
            tag=tag,
        )


def _register_users(api: Api) -> None:
    add = api.add
    add(
        "DELETE",
        "/api/v1/users/{user_id}/messages",
        delete_user_messages,
        access="trusted",
        status=204,
        summary="delete every message of the user (moderator deletions, as events)",
        tag="users",
    )
    add(
        "DELETE",
        "/api/v1/frontend_users/{auth_method}/{username}/messages",
        delete_frontend_user_messages,
        access="trusted",
        status=204,
        summary="delete every message of the client's user",
        tag="users",
    )
    add(
        "GET",
        "/api/v1/frontend_users/",
        users._by("username"),
        response=list[s.FrontEndUser],
        query={"gte_username": "from", "lte_username": "to", "max_count": "default 100"},
        summary="deprecated: users ordered by username (as /users/by_username)",
        tag="users",
    )
