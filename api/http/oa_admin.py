"""OA's /admin endpoints beyond API clients: backend settings, purges, flagged messages.

Purges are events (domain.service.purges): a preview runs the same selection and records
nothing; ``before``/``after`` are OA's SystemStats read from the read model (a preview's
``after`` counts the selected messages as gone). Settings are OA's names with this
server's values; secrets (keys, tokens, passwords) are never sent, not even to trusted
clients: a deliberate difference from OA, which answers them in full.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from uuid import UUID

import msgspec

from api.http.errors import not_found, validation
from api.http.routing import Api, Call
from domain.model.actor import Actor
from domain.model.errors import ErrorCode
from projections import oa_queries as q

API_V1 = "/api/v1"


def public_settings(call: Call) -> dict[str, Any]:
    config = call.service.app.config
    return {
        "PROJECT_NAME": "DataEngine",
        "API_V1_STR": API_V1,
        "MESSAGE_SIZE_LIMIT": config.message_size_limit,
        "DEBUG_USE_SEED_DATA": False,
        "DEBUG_ALLOW_SELF_LABELING": False,
        "DEBUG_SKIP_EMBEDDING_COMPUTATION": True,  # no embeddings are computed here
        "DEBUG_SKIP_TOXICITY_CALCULATION": True,  # toxicity only on request (/hf/text_toxicity)
        "DEBUG_DATABASE_ECHO": False,
        # Statistics are read models, current with the log: no refresh interval (minutes).
        "USER_STATS_INTERVAL_DAY": 0,
        "USER_STATS_INTERVAL_WEEK": 0,
        "USER_STATS_INTERVAL_MONTH": 0,
        "USER_STATS_INTERVAL_TOTAL": 0,
    }


async def settings_public(call: Call) -> Any:
    return public_settings(call)


async def settings_full(call: Call) -> Any:
    limits = call.service.task_limits.limits
    return {
        **public_settings(call),
        "RATE_LIMIT": limits.enabled,
        "RATE_LIMIT_TASK_USER_TIMES": limits.user_tasks.times,
        "RATE_LIMIT_TASK_USER_MINUTES": limits.user_tasks.seconds / 60,
        "RATE_LIMIT_TASK_API_TIMES": limits.client.times,
        "RATE_LIMIT_TASK_API_MINUTES": limits.client.seconds / 60,
        "RATE_LIMIT_ASSISTANT_USER_TIMES": limits.assistant_reply.times,
        "RATE_LIMIT_ASSISTANT_USER_MINUTES": limits.assistant_reply.seconds / 60,
        "RATE_LIMIT_PROMPTER_USER_TIMES": limits.prompter_reply.times,
        "RATE_LIMIT_PROMPTER_USER_MINUTES": limits.prompter_reply.seconds / 60,
        "ENABLE_PROM_METRICS": True,
        "CACHED_STATS_UPDATE_INTERVAL": 0,
        "tree_manager": msgspec.to_builtins(call.service.app.config),
    }


def _moderator(call: Call) -> Actor:
    return call.header_actor(required=False) or Actor(None, call.api_client.id)


async def _purge(call: Call, command: str, **options: Any) -> dict[str, Any]:
    user_id = call.path_id("user_id", ErrorCode.USER_NOT_FOUND, "user")
    preview = call.flag("preview", True)
    started = time.perf_counter()
    before = await call.read(q.system_stats)
    trees = await call.read(q.user_trees, user_id)
    outcome = await call.blocking(
        getattr(call.service.app, command),
        user_id=user_id,
        tree_ids=trees,
        actor=_moderator(call),
        preview=preview,
        **options,
    )
    if preview:
        after = await call.read(q.system_stats, outcome.message_ids)
    else:
        await call.service.catch_up_async(outcome.position)
        after = await call.read(q.system_stats)
    return {
        "before": before,
        "after": after,
        "preview": preview,
        "duration": time.perf_counter() - started,
    }


async def purge_user(call: Call) -> Any:
    return await _purge(call, "purge_user", ban=call.flag("ban", True))


async def purge_user_messages(call: Call) -> Any:
    min_date, max_date = call.time_query("min_date"), call.time_query("max_date")
    if min_date is not None and max_date is not None and min_date > max_date:
        raise validation("min_date must not be after max_date")
    return await _purge(
        call,
        "purge_user_messages",
        include_prompts=call.flag("purge_initial_prompts", False),
        min_date=min_date,
        max_date=max_date,
    )


class MergeUsersRequest(msgspec.Struct, forbid_unknown_fields=True):
    """OA's body: the users to merge into ``destination_user_id``."""

    destination_user_id: UUID
    source_user_ids: Annotated[list[UUID], msgspec.Meta(min_length=1)]  # documented, checked


async def merge_users(call: Call) -> None:
    """OA's merge: the sources' messages, labels, reactions and tasks become the
    destination's; the sources are disabled and deleted. Recorded as User.UsersMerged and
    User.MergedInto; an unknown user (404), an empty list, the destination among the
    sources or a user merged before (422) record nothing."""
    body = call.json(MergeUsersRequest)
    if not body.source_user_ids:
        raise validation("source_user_ids must name at least one user")
    position = await call.blocking(
        call.service.app.merge_users,
        destination_user_id=body.destination_user_id,
        source_user_ids=body.source_user_ids,
        actor=_moderator(call),
    )
    await call.service.catch_up_async(position)


def _max_count(call: Call) -> int:
    raw = call.query("max_count")
    if raw is None:
        raise validation("query parameter max_count is required")
    return call.count("max_count", 100, 10_000)


async def flagged(call: Call) -> Any:
    return await call.read(q.flagged_messages, _max_count(call))


async def flagged_cursor(call: Call) -> Any:
    """Beyond OA's document (its router has it): the page after ``after``."""
    try:
        return await call.read(
            q.flagged_page, call.count("max_count", 100, 10_000), call.query("after")
        )
    except ValueError:
        raise validation("after must be a cursor '<created_at>$<message_id>'") from None


async def processed(call: Call) -> Any:
    message_id = call.path_id("message_id", ErrorCode.MESSAGE_NOT_FOUND, "message")
    found = await call.read(q.flagged_message, message_id)
    if found is None:
        raise not_found(f"message {message_id} is not flagged", ErrorCode.MESSAGE_NOT_FOUND)
    position = await call.blocking(
        call.service.app.process_flagged_message, message_id=message_id, actor=_moderator(call)
    )
    await call.service.catch_up_async(position)
    return await call.read(q.flagged_message, message_id)


async def processed_here(call: Call) -> Any:
    """``processed`` at the path OA meant (/admin/flagged_messages/...)."""
    return await processed(call)


_PURGE = {"preview": "default true: record nothing, answer what would change"}


def register(api: Api) -> None:
    add = api.add
    add(
        "GET",
        "/api/v1/admin/backend_settings/full",
        settings_full,
        access="trusted",
        response=dict[str, Any],
        summary="backend settings (OA's names; secrets left out)",
        tag="admin",
    )
    add(
        "GET",
        "/api/v1/admin/backend_settings/public",
        settings_public,
        response=dict[str, Any],
        summary="the settings any client may read",
        tag="admin",
    )
    add(
        "POST",
        "/api/v1/admin/purge_user/{user_id}",
        purge_user,
        access="trusted",
        response=dict[str, Any],
        query={**_PURGE, "ban": "default true: disable and delete the user"},
        summary="purge every message of a user (recorded as MessagesPurged events)",
        tag="admin",
    )
    add(
        "POST",
        "/api/v1/admin/purge_user/{user_id}/messages",
        purge_user_messages,
        access="trusted",
        response=dict[str, Any],
        query={
            **_PURGE,
            "purge_initial_prompts": "default false",
            "min_date": "ISO 8601",
            "max_date": "ISO 8601",
        },
        summary="purge a user's messages, in a date range, prompts on request",
        tag="admin",
    )
    add(
        "POST",
        "/api/v1/admin/merge_users",
        merge_users,
        access="trusted",
        body=MergeUsersRequest,
        status=204,
        summary="merge users into one (recorded as UsersMerged and MergedInto events)",
        tag="admin",
    )
    _register_flagged(api)


def _register_flagged(api: Api) -> None:
    add = api.add
    add(
        "GET",
        "/api/v1/admin/flagged_messages",
        flagged,
        access="trusted",
        response=list[dict[str, Any]],
        query={"max_count": "required"},
        summary="reported messages not processed yet, oldest first",
        tag="admin",
    )
    add(
        "GET",
        "/api/v1/admin/flagged_messages/cursor",
        flagged_cursor,
        access="trusted",
        response=dict[str, Any],
        query={"max_count": "default 100", "after": "'<created_at>$<message_id>'"},
        summary="a page of flagged messages after a cursor",
        tag="admin",
    )
    # OA's router serves it under /admin/admin/ (its document says so); both paths work.
    for path, handler in (
        ("/api/v1/admin/admin/flagged_messages/{message_id}/processed", processed),
        ("/api/v1/admin/flagged_messages/{message_id}/processed", processed_here),
    ):
        add(
            "POST",
            path,
            handler,
            access="trusted",
            response=dict[str, Any],
            summary="mark a flagged message processed (a ReportsProcessed event)",
            tag="admin",
        )
