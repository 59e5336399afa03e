"""Users: front-end users (create/update, look up), OA's /users lists and keyset pages,
moderation of a user (PUT, DELETE), and API-client administration.

A user is unique per (API client, auth_method, id), so a client can only ever name its
own users: the user id is derived from the client's id (domain.model.user.user_id_for).
Untrusted clients see only their own users (another client's user is not found, as
in OA); trusted ones may name any client with ``api_client_id``.

Deleting a user anonymises it, as OA does, by an event (a profile update: deleted,
display name "Deleted User", off the leaderboards). The id the front end knew it by
stays in the log (the log is never rewritten) but no answer shows it again: a deleted
user is listed as ``deleted_<user_id>``, and its old name no longer finds it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC
from typing import Any, cast
from uuid import UUID

from api.http import schemas as s
from api.http.errors import HttpError, not_authorized
from api.http.routing import Api, Call
from domain.model.errors import ErrorCode, UserNotFoundError
from domain.model.user import User, user_id_for
from projections.queries import users as q
from projections.queries.users import DELETED_PREFIX, SORT_KEYS

SPLIT_UUID = re.compile(
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12})\$(.*)$"
)


def frontend_user(user: User) -> s.FrontEndUser:
    return s.FrontEndUser(
        id=f"{DELETED_PREFIX}{user.id}" if user.deleted else user.username,
        display_name=user.display_name,
        auth_method=cast(s.AuthMethod, user.auth_method),
        user_id=user.id,
        enabled=user.enabled,
        deleted=user.deleted,
        notes=user.notes or "",
        created_date=user.created_on,
        show_on_leaderboard=user.show_on_leaderboard,
        tos_acceptance_date=user.tos_accepted_at,
    )


def user_from_row(row: tuple) -> s.FrontEndUser:
    from datetime import datetime

    def moment(value: float | None) -> datetime | None:
        return None if value is None else datetime.fromtimestamp(value, UTC)

    return s.FrontEndUser(
        id=row[3],
        display_name=row[4],
        auth_method=row[2],
        user_id=UUID(row[0]),
        enabled=bool(row[5]),
        deleted=bool(row[6]),
        show_on_leaderboard=bool(row[7]),
        tos_acceptance_date=moment(row[8]),
        notes=row[9] or "",
        created_date=moment(row[10]),
    )


async def users_by_id(call: Call, ids: list[str]) -> dict[str, s.FrontEndUser]:
    if not ids:
        return {}
    rows = await call.read(q.by_ids, ids)
    return {row[0]: user_from_row(row) for row in rows}


def client_scope(call: Call, api_client_id: UUID | None) -> str | None:
    """The API client whose users/messages a query may see: an untrusted client only its
    own (another one named is refused, 403, as in OA); a trusted one any, or all."""
    client = call.api_client
    if not client.trusted:
        if api_client_id is not None and api_client_id != client.id:
            raise not_authorized("an untrusted API client sees only its own users and messages")
        return str(client.id)
    return str(api_client_id) if api_client_id is not None else None


async def visible_user(call: Call, user_id: UUID) -> s.FrontEndUser:
    """The user as the caller may see it; 404 when unknown or another client's."""
    scope = client_scope(call, call.uuid_query("api_client_id"))
    row = await call.read(q.by_id, str(user_id))
    if row is None:  # maybe registered a moment ago
        await call.service.catch_up_async(await call.service.head_async())
        row = await call.read(q.by_id, str(user_id))
    if row is None or (scope is not None and row[1] != scope):
        raise UserNotFoundError(f"user {user_id} not found")
    return user_from_row(row)


# ---------------------------------------------------------------- front-end users
def create_or_update(call: Call) -> Any:
    req: s.CreateFrontendUserRequest = call.json(s.CreateFrontendUserRequest)
    app = call.service.app
    outcome = app.upsert_user(
        client_id=call.api_client.id,
        auth_method=req.auth_method,
        username=req.id,
        display_name=req.display_name,
        tos_acceptance=bool(req.tos_acceptance),
        show_on_leaderboard=req.show_on_leaderboard,
        enabled=req.enabled,
        notes=req.notes,
    )
    call.catch_up(outcome.position)
    return frontend_user(app.user_of(outcome.id))  # read only: no copy of its tasks


async def frontend_user_id(call: Call) -> UUID:
    """The path's (auth_method, username) as a user id of the calling client (or, for a
    trusted client, of ``api_client_id``); 404 when unknown or deleted."""
    auth_method = call.request.path_params["auth_method"]
    username = call.request.path_params["username"]
    scope = client_scope(call, call.uuid_query("api_client_id"))
    user_id = user_id_for(UUID(scope) if scope else call.api_client.id, auth_method, username)
    user = await call.service.find_user_async(user_id)
    if user is None or user.deleted:
        raise UserNotFoundError(f"user {auth_method}:{username} not found")
    return user_id


async def get_frontend_user(call: Call) -> Any:
    user = await call.service.find_user_async(await frontend_user_id(call))
    assert user is not None
    return frontend_user(user)


# ---------------------------------------------------------------- lists and pages
async def ordered(
    call: Call,
    key: str,
    *,
    gte: str | None,
    gt_id: UUID | None,
    lte: str | None,
    lt_id: UUID | None,
    limit: int,
    desc: bool,
) -> list[s.FrontEndUser]:
    """Users ordered by ``key`` then id, from (gte, gt_id) to (lte, lt_id) (OA's keyset)."""
    scope = client_scope(call, call.uuid_query("api_client_id"))
    for bound, ident in ((gte, gt_id), (lte, lt_id)):
        if bound is None and ident is not None:
            raise HttpError("Need id and name for keyset pagination", ErrorCode.GENERIC_ERROR, 400)
    rows = await call.read(
        q.ordered,
        key,
        scope=scope,
        gte=None if gte is None else (gte, None if gt_id is None else str(gt_id)),
        lte=None if lte is None else (lte, None if lt_id is None else str(lt_id)),
        auth_method=call.query("auth_method") or None,
        search=call.query("search_text") or None,
        desc=desc,
        limit=limit,
    )
    return [user_from_row(r) for r in rows]


def _by(key: str) -> Callable[[Call], Any]:
    async def by_key(call: Call) -> Any:
        return await ordered(
            call,
            key,
            gte=call.query(f"gte_{key}"),
            gt_id=call.uuid_query("gt_id"),
            lte=call.query(f"lte_{key}"),
            lt_id=call.uuid_query("lt_id"),
            limit=call.count("max_count", 100, 10_000),
            desc=call.flag("desc", False),
        )

    by_key.__name__ = f"users_by_{key}"
    return by_key


def _split(raw: str | None) -> tuple[str | None, UUID | None]:
    if not raw:
        return None, None
    found = SPLIT_UUID.match(raw)
    return (found[2], UUID(found[1])) if found else (raw, None)


async def users_cursor(call: Call) -> Any:
    """OA's /users/cursor: ``after`` pages forward, ``before`` backward; items ascending."""
    key = call.query("sort_key", "username")
    if key not in SORT_KEYS:
        raise HttpError(f"Unsupported sort key: {key!r}", ErrorCode.SORT_KEY_UNSUPPORTED, 400)
    max_count = call.count("max_count", 100, 10_000)
    before, after = call.query("before"), call.query("after")
    lte, lt_id = _split(before)
    gte, gt_id = _split(after)
    limit = max_count + 1 if before is None or after is None else max_count
    desc = before is not None and not after
    items = await ordered(
        call, key, gte=gte, gt_id=gt_id, lte=lte, lt_id=lt_id, limit=limit, desc=desc
    )
    rows = len(items)
    if limit > max_count and rows == limit:
        items = items[:-1]
    if desc:
        items.reverse()
    prev = next_ = None
    if items:
        if (rows > max_count and lte) or gte:
            prev = f"{items[0].user_id}${getattr(items[0], 'id' if key == 'username' else key)}"
        if rows > max_count or lte:
            next_ = f"{items[-1].user_id}${getattr(items[-1], 'id' if key == 'username' else key)}"
    else:
        prev, next_ = (after if gte else None), (before if lte else None)
    return s.FrontEndUserPage(
        prev=prev, next=next_, sort_key=cast(s.UserSortKey, key), order="asc", items=items
    )


# ---------------------------------------------------------------- one user
async def get_user(call: Call) -> Any:
    return await visible_user(call, call.path_id("user_id", ErrorCode.USER_NOT_FOUND, "user"))


def update_user(call: Call) -> None:
    """OA's PUT /users/{id}: the query's fields change, the others stay."""
    user_id = call.path_id("user_id", ErrorCode.USER_NOT_FOUND, "user")
    changes: dict[str, Any] = {
        "display_name": call.query("display_name"),
        "enabled": call.optional_flag("enabled"),
        "notes": call.query("notes"),
        "show_on_leaderboard": call.optional_flag("show_on_leaderboard"),
    }
    if call.optional_flag("tos_acceptance"):
        changes["tos_accepted_at"] = call.service.app.now()
    call.catch_up(call.service.app.update_user(user_id, **changes))


def delete_user(call: Call) -> None:
    user_id = call.path_id("user_id", ErrorCode.USER_NOT_FOUND, "user")
    call.catch_up(call.service.app.delete_user(user_id))


def create_api_client(call: Call) -> Any:
    req: s.CreateApiClientRequest = call.json(s.CreateApiClientRequest)
    app = call.service.app
    client_id, key = app.register_client(
        name=req.description,
        api_key=req.api_key,
        trusted=req.trusted,
        frontend_type=req.frontend_type,
        description=req.description,
        admin_email=req.admin_email,
    )
    if not req.enabled:
        app.change_client_access(client_id, enabled=False)
    return key  # OA answers with the bare key as a JSON string


_LIST_QUERY = {
    "api_client_id": "trusted clients: another client's users",
    "auth_method": "filter",
    "search_text": "substring of the sort key",
    "max_count": "1..10000, default 100",
    "desc": "default false",
}


def register(api: Api) -> None:
    add = api.add
    add(
        "POST",
        "/api/v1/frontend_users/",
        create_or_update,
        body=s.CreateFrontendUserRequest,
        response=s.FrontEndUser,
        summary="create or update a front-end user",
        tag="users",
    )
    add(
        "GET",
        "/api/v1/frontend_users/{auth_method}/{username}",
        get_frontend_user,
        response=s.FrontEndUser,
        query={"api_client_id": "trusted clients: another client's"},
        summary="a front-end user",
        tag="users",
    )
    _register_lists(api)  # literal paths before /users/{user_id}, which would take them
    add(
        "GET",
        "/api/v1/users/{user_id}",
        get_user,
        response=s.FrontEndUser,
        query={"api_client_id": "trusted clients: another client's"},
        summary="a user by id (untrusted clients: their own)",
        tag="users",
    )
    add(
        "PUT",
        "/api/v1/users/{user_id}",
        update_user,
        access="trusted",
        status=204,
        query={
            "display_name": "new display name",
            "enabled": "true/false",
            "notes": "moderator notes",
            "show_on_leaderboard": "true/false",
            "tos_acceptance": "true records acceptance now",
        },
        summary="update a user",
        tag="users",
    )
    add(
        "DELETE",
        "/api/v1/users/{user_id}",
        delete_user,
        access="trusted",
        status=204,
        summary="delete (anonymise) a user: recorded as an event",
        tag="users",
    )
    _register_admin(api)


def _register_lists(api: Api) -> None:
    add = api.add
    for key in SORT_KEYS:
        add(
            "GET",
            f"/api/v1/users/by_{key}",
            _by(key),
            response=list[s.FrontEndUser],
            query={
                f"gte_{key}": "from (inclusive)",
                "gt_id": "with gte: after this id",
                f"lte_{key}": "to (inclusive)",
                "lt_id": "with lte: before this id",
                **_LIST_QUERY,
            },
            summary=f"users ordered by {key}, then id",
            tag="users",
        )
    add(
        "GET",
        "/api/v1/users/cursor",
        users_cursor,
        response=s.FrontEndUserPage,
        query={
            "before": "cursor '<user_id>$<key>': the page before",
            "after": "cursor: the page after",
            "sort_key": "username (default) or display_name",
            **{k: v for k, v in _LIST_QUERY.items() if k != "desc"},
        },
        summary="a keyset page of users",
        tag="users",
    )


def _register_admin(api: Api) -> None:
    add = api.add
    add(
        "POST",
        "/api/v1/admin/api_client",
        create_api_client,
        access="root",
        body=s.CreateApiClientRequest,
        response=str,
        summary="create an API client (Authorization: Bearer <root token>)",
        tag="admin",
    )
