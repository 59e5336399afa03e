"""OA's task protocol: request, availability, ack, nack and interaction (reference §6.3).

The flow an OA front end drives: ``POST /tasks/`` hands out a task (after the prompt
lottery, as OA does), ``/ack`` binds the front end's id to it, ``/interaction`` answers
it (found again by that id) and gets ``task_done``; or ``/nack`` skips it. Every
answer is recorded by one DataEngine command with the task id, which makes a retry
with the same front-end ids record nothing new and get the same answer.
"""

from __future__ import annotations

from typing import Any, TypedDict
from uuid import UUID

import msgspec

from api.http import auth
from api.http import schemas as s
from api.http.errors import HttpError
from api.http.images import add_image_urls, image_refs
from api.http.routing import Api, Call
from domain.model.actor import Actor
from domain.model.errors import (
    ErrorCode,
    InvalidRankingError,
    TaskTypeMismatchError,
)
from domain.model.task_types import PROMPT_TASKS, RANKING_TASKS, REPLY_TASKS, TaskType
from domain.model.user import Task
from domain.service.handout import HandedOut
from projections import availability as av
from projections.task_queries import conversation_messages

TASK_ID = ErrorCode.TASK_NOT_FOUND


# ---------------------------------------------------------------- task bodies
def _enrich(call: Call, user_id: UUID, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OA's ConversationMessage fields the hand-out payload leaves out (author, emojis)."""
    return conversation_messages(call.service.reader(), user_id, messages)


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
    add_image_urls(call.service, call.api_client.id, handed.task.tree_id, body)
    return msgspec.convert(body, s.AnyTask)


# ---------------------------------------------------------------- helpers
def _request_user(call: Call, user: s.User | None, header: tuple[str, str] | None = None) -> UUID:
    """The requesting user, created on first sight from the body or the header."""
    if user is not None:
        return call.user_id(user)
    if header is None:
        raise HttpError(
            "a task request needs a user (body 'user' or x-oasst-user header)",
            ErrorCode.USER_NOT_SPECIFIED,
            400,
        )
    return call.named_user(*header, None)


def _user(actor: Actor) -> UUID:
    assert actor.user_id is not None, "a task interaction names its user"
    return actor.user_id


def _task_owner(call: Call, task_id: UUID) -> UUID:
    """The user the task was handed to, who must be one of the calling client's users
    (a user named in the header is by construction): another client's task is not
    found, so a client can neither touch it nor learn that it exists."""
    actor = call.header_actor(required=False)
    if actor is not None and actor.user_id is not None:
        return actor.user_id
    owner = call.service.task_owner(task_id)
    user = call.service.find_user(owner)
    if user is None or user.client_id != call.api_client.id:
        raise HttpError(f"task {task_id} not found", ErrorCode.TASK_NOT_FOUND, 404)
    return owner


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
    assert service.handout is not None, "the service is not open"
    handed = service.handout.request(user_id, TaskType(req.type), req.lang or "en")
    # the user's next request must see this task (pending count, reply reservation)
    call.catch_up(handed.position)
    return task_body(call, handed, user_id)


async def availability(call: Call) -> Any:
    # OA's body is optional: without a user, the counts before any user's exclusions.
    user: s.User | None = call.json(s.User) if call.body.strip() else None
    service = call.service

    def first_sight_and_lottery() -> UUID | None:  # commands: in the threadpool
        user_id = call.user_id(user) if user is not None else None
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
    call.catch_up(
        call.service.app.ack_task(
            user_id=user_id, task_id=task_id, frontend_message_id=req.message_id
        )
    )


def nack(call: Call) -> None:
    task_id = call.path_id("task_id", TASK_ID, "task")
    req: s.TaskNAck = call.json(s.TaskNAck) if call.body.strip() else s.TaskNAck()
    user_id = _task_owner(call, task_id)
    # the skip (on the user, and as an emoji on the tree) hides the target from this user
    call.catch_up(call.service.app.nack_task(user_id=user_id, task_id=task_id, reason=req.reason))


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
    task = app.task_by_frontend_id(_user(actor), body.message_id)
    kind = TaskType(task.type)
    if isinstance(body, s.TextReplyToMessage):
        lang = body.lang or task.lang or "en"
        images = image_refs(call.service, call.api_client.id, body.image_ids)
        if kind in PROMPT_TASKS:
            outcome = app.create_prompt(
                actor=actor,
                text=body.text,
                lang=lang,
                task_id=task.id,
                frontend_message_id=body.user_message_id,
                images=images,
            )
        elif kind in REPLY_TASKS:
            outcome = app.add_reply(
                actor=actor,
                **_parent(task),
                text=body.text,
                lang=lang,
                task_id=task.id,
                frontend_message_id=body.user_message_id,
                images=images,
            )
        else:
            raise TaskTypeMismatchError(f"task {task.id} is a {task.type} task, not a reply task")
    else:
        if kind not in RANKING_TASKS:
            raise TaskTypeMismatchError(f"task {task.id} is a {task.type} task, not a ranking task")
        outcome = app.submit_ranking(
            actor=actor,
            **_parent(task),
            ranked_message_ids=_ranked_ids(task, body.ranking),
            not_rankable=body.not_rankable,
            task_id=task.id,
        )
    call.catch_up(outcome.position)
    return s.TaskDone(id=task.id)


class _Parent(TypedDict):
    tree_id: UUID
    parent_id: UUID


def _parent(task: Task) -> _Parent:
    """The tree and parent message a reply or ranking task is about (set when issued)."""
    assert task.tree_id is not None and task.message_id is not None, task.type
    return _Parent(tree_id=task.tree_id, parent_id=task.message_id)


def _ranked_ids(task: Task, ranking: list[int]) -> list[UUID]:
    replies = task.payload.get("reply_messages", [])
    if sorted(ranking) != list(range(len(replies))):
        raise InvalidRankingError(
            f"ranking must order all {len(replies)} replies: a permutation of 0..{len(replies) - 1}"
        )
    return [UUID(replies[i]["message_id"]) for i in ranking]


def submit_labels(call: Call, actor: Any, body: s.TextLabels | s.FreeTextLabels) -> s.TaskDone:
    kind = "task" if body.task_id is not None else "report" if body.is_report else "free"
    # the message's tree comes from the log's message index, not from a read model
    client = call.api_client
    outcome = call.service.app.submit_labels(
        actor=actor,
        message_id=body.message_id,
        labels=body.labels,
        kind=kind,
        task_id=body.task_id,
        client_scope=None if client.trusted else client.id,
    )
    call.catch_up(outcome.position)
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
