"""OA's task protocol: request, availability, ack, nack and interaction (reference §6.3).

The flow an OA front end drives: ``POST /tasks/`` hands out a task (after the prompt
lottery, as OA does), ``/ack`` binds the front end's id to it, ``/interaction`` answers
it (found again by that id) and gets ``task_done``; or ``/nack`` skips it. Every
answer is recorded by one DataEngine command with the task id, which makes a retry
with the same front-end ids record nothing new and get the same answer.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import msgspec

from api.http import auth
from api.http import schemas as s
from api.http.errors import HttpError
from api.http.routing import Api, Call
from domain.model.errors import (
    ErrorCode,
    InvalidRankingError,
    TaskTypeMismatchError,
    UserNotFoundError,
)
from domain.model.task_types import PROMPT_TASKS, RANKING_TASKS, REPLY_TASKS, TaskType
from domain.model.user import Task, User
from domain.service.handout import HandedOut
from projections import availability as av

TASK_ID = ErrorCode.TASK_NOT_FOUND


# ---------------------------------------------------------------- task bodies
def _enrich(call: Call, user_id: UUID, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OA's ConversationMessage fields the hand-out payload leaves out (author, emojis)."""
    ids = [m["message_id"] for m in messages]
    if not ids:
        return []
    conn, marks = call.service.reader(), ",".join("?" * len(ids))
    rows = {
        r[0]: r
        for r in conn.execute(
            f"SELECT message_id, user_id, frontend_message_id, emojis FROM messages"
            f" WHERE message_id IN ({marks})",
            ids,
        )
    }
    mine: dict[str, list[str]] = {}
    for message_id, emoji in conn.execute(
        f"SELECT message_id, emoji FROM message_emojis WHERE user_id = ?"
        f" AND message_id IN ({marks})",
        [str(user_id), *ids],
    ):
        if not emoji.startswith("_"):
            mine.setdefault(message_id, []).append(emoji)
    out = []
    for m in messages:
        row = rows.get(m["message_id"])
        emojis = json.loads(row[3]) if row else {}
        out.append(
            {
                "id": m["message_id"],
                "text": m["text"],
                "lang": m.get("lang"),
                "is_assistant": m["is_assistant"],
                "synthetic": m.get("synthetic"),
                "user_id": row[1] if row else None,
                "frontend_message_id": row[2] if row else None,
                "emojis": {k: v for k, v in emojis.items() if not k.startswith("_")},
                "user_emojis": sorted(mine.get(m["message_id"], [])),
                "user_is_author": (row[1] == str(user_id)) if row else None,
            }
        )
    return out


def task_body(call: Call, handed: HandedOut, user_id: UUID) -> Any:
    p = dict(handed.payload)
    body: dict[str, Any] = {**p, "id": handed.id, "type": handed.type}
    if "conversation" in p:
        body["conversation"] = {"messages": _enrich(call, user_id, p["conversation"]["messages"])}
    if "reply_messages" in p:
        body["reply_messages"] = _enrich(call, user_id, p["reply_messages"])
    if p.get("reply_message"):
        body["reply_message"] = _enrich(call, user_id, [p["reply_message"]])[0]
    if "parent_message_id" in p or "ranking_parent_id" in p or "message_id" in p:
        body.setdefault("message_tree_id", str(handed.task.tree_id))
    if handed.type in (TaskType.INITIAL_PROMPT, TaskType.PROMPTER_REPLY):
        body.setdefault("hint", None)  # the text front end reads task["hint"]
    return msgspec.convert(body, s.AnyTask)


# ---------------------------------------------------------------- helpers
def _request_user(call: Call, user: s.User | None, header: tuple[str, str] | None = None) -> UUID:
    """The requesting user, created on first sight from the body or the header."""
    if user is not None:
        return call.user(user).user_id
    if header is None:
        raise HttpError(
            "a task request needs a user (body 'user' or x-oasst-user header)",
            ErrorCode.USER_NOT_SPECIFIED,
            400,
        )
    return call.service.ensure_user(call.api_client, *header, None)


def _user_aggregate(call: Call, user_id: UUID) -> User:
    # Read-only look-up in the aggregate cache (no copy): the task's fields we read are
    # set when it is issued and never change.
    from eventsourcing.application import AggregateNotFoundError

    try:
        user = call.service.app.repository.get(user_id, deepcopy_from_cache=False)
    except AggregateNotFoundError:
        raise UserNotFoundError(f"user {user_id} not found") from None
    if not isinstance(user, User):
        raise UserNotFoundError(f"user {user_id} not found")
    return user


def _task_owner(call: Call, task_id: UUID) -> UUID:
    actor = call.header_actor(required=False)
    if actor is not None and actor.user_id is not None:
        return actor.user_id
    return call.service.task_owner(task_id)


# ---------------------------------------------------------------- endpoints
def request_task(call: Call) -> Any:
    req: s.TaskRequest = call.json(s.TaskRequest)
    if req.collective:
        raise HttpError("collective tasks are not supported", ErrorCode.TASK_NOT_COLLECTIVE, 400)
    # Limits first: a refused request records nothing (not even a first-seen user).
    header = auth.header_user(call.request) if req.user is None else None
    who = (req.user.auth_method, req.user.id) if req.user is not None else header
    call.service.task_limits.check(call.api_client.id, who, req.type)
    user_id = _request_user(call, req.user, header)
    service = call.service
    service.run_lottery()
    handed = service.handout.request(user_id, TaskType(req.type), req.lang or "en")
    # the user's next request must see this task (pending count, reply reservation)
    call.settle(service.position_of(user_id))
    return task_body(call, handed, user_id)


async def availability(call: Call) -> Any:
    user: s.User = call.json(s.User)
    service = call.service

    def first_sight_and_lottery() -> UUID:  # commands: in the threadpool
        user_id = call.user(user).user_id
        service.run_lottery()
        return user_id

    user_id = await call.blocking(first_sight_and_lottery)
    counts = await call.read(
        av.availability, service.app.config, call.query("lang") or "en", user_id, service.app.now()
    )
    return {t.value: n for t, n in counts.items()}


def ack(call: Call) -> None:
    task_id = call.path_id("task_id", TASK_ID, "task")
    req: s.TaskAck = call.json(s.TaskAck)
    user_id = _task_owner(call, task_id)
    call.service.app.ack_task(user_id=user_id, task_id=task_id, frontend_message_id=req.message_id)


def nack(call: Call) -> None:
    task_id = call.path_id("task_id", TASK_ID, "task")
    req: s.TaskNAck = call.json(s.TaskNAck) if call.body.strip() else s.TaskNAck()
    user_id = _task_owner(call, task_id)
    app = call.service.app
    app.nack_task(user_id=user_id, task_id=task_id, reason=req.reason)
    # the skip (on the user, and as an emoji on the tree) hides the target from this user
    tree_id = _user_aggregate(call, user_id).task(task_id).tree_id
    call.settle(call.service.position_of(user_id, *([tree_id] if tree_id else [])))


def interaction(call: Call) -> Any:
    body = call.json(s.AnyInteraction, strict=False)
    actor = call.user(body.user)
    app = call.service.app
    if isinstance(body, s.MessageRating):
        raise HttpError(
            "rating tasks are never handed out", ErrorCode.TASK_INVALID_RESPONSE_TYPE, 400
        )
    if isinstance(body, s.TextLabels):
        return submit_labels(call, actor, body)
    task = _user_aggregate(call, actor.user_id).task_by_frontend_id(body.message_id)
    kind = TaskType(task.type)
    if isinstance(body, s.TextReplyToMessage):
        lang = body.lang or task.lang or "en"
        if kind in PROMPT_TASKS:
            outcome = app.create_prompt(
                actor=actor,
                text=body.text,
                lang=lang,
                task_id=task.id,
                frontend_message_id=body.user_message_id,
            )
        elif kind in REPLY_TASKS:
            outcome = app.add_reply(
                actor=actor,
                tree_id=task.tree_id,
                parent_id=task.message_id,
                text=body.text,
                lang=lang,
                task_id=task.id,
                frontend_message_id=body.user_message_id,
            )
        else:
            raise TaskTypeMismatchError(f"task {task.id} is a {task.type} task, not a reply task")
    else:
        if kind not in RANKING_TASKS:
            raise TaskTypeMismatchError(f"task {task.id} is a {task.type} task, not a ranking task")
        outcome = app.submit_ranking(
            actor=actor,
            tree_id=task.tree_id,
            parent_id=task.message_id,
            ranked_message_ids=_ranked_ids(task, body.ranking),
            not_rankable=body.not_rankable,
            task_id=task.id,
        )
    call.settle(outcome.position)
    return s.TaskDone(id=task.id)


def _ranked_ids(task: Task, ranking: list[int]) -> list[UUID]:
    replies = task.payload.get("reply_messages", [])
    if sorted(ranking) != list(range(len(replies))):
        raise InvalidRankingError(
            f"ranking must order all {len(replies)} replies: a permutation of 0..{len(replies) - 1}"
        )
    return [UUID(replies[i]["message_id"]) for i in ranking]


def submit_labels(call: Call, actor: Any, body: s.TextLabels | s.FreeTextLabels) -> s.TaskDone:
    service = call.service
    if body.task_id is not None:
        task = _user_aggregate(call, actor.user_id).task(body.task_id)
        tree_id = task.tree_id or service.tree_of(body.message_id)
        kind = "task"
    else:
        tree_id, kind = service.tree_of(body.message_id), "report" if body.is_report else "free"
    outcome = service.app.submit_labels(
        actor=actor,
        tree_id=tree_id,
        message_id=body.message_id,
        labels=body.labels,
        kind=kind,
        task_id=body.task_id,
    )
    call.settle(outcome.position)
    return s.TaskDone(id=body.task_id or body.message_id)


def register(api: Api) -> None:
    api.add(
        "POST",
        "/api/v1/tasks/",
        request_task,
        body=s.TaskRequest,
        response=s.AnyTask,
        summary="hand out a task",
        tag="tasks",
        errors={
            "429": "rate limit exceeded (error_code 429): per user 30 per 4 min, explicit "
            "assistant_reply 4 and prompter_reply 8 per 2 min, per client without "
            "user 10,000 per min; configurable"
        },
    )
    api.add(
        "POST",
        "/api/v1/tasks/availability",
        availability,
        body=s.User,
        response=dict[str, int],
        query={"lang": "language (default en)"},
        summary="task counts per type",
        tag="tasks",
    )
    api.add(
        "POST",
        "/api/v1/tasks/{task_id}/ack",
        ack,
        body=s.TaskAck,
        status=204,
        summary="bind the front end's message id to a task",
        tag="tasks",
    )
    api.add(
        "POST",
        "/api/v1/tasks/{task_id}/nack",
        nack,
        body=s.TaskNAck,
        status=204,
        summary="skip a task (x-oasst-user header)",
        tag="tasks",
    )
    api.add(
        "POST",
        "/api/v1/tasks/interaction",
        interaction,
        body=s.AnyInteraction,
        response=s.TaskDone,
        summary="answer a task",
        tag="tasks",
    )
