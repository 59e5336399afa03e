"""Lists of messages: OA's ``GET /messages/`` and ``/messages/cursor``, and the same per
user (``/users/{id}/messages``, ``/frontend_users/{auth_method}/{username}/messages``).

Messages are ordered by (created_date, id). A cursor is ``"<uuid>$<ISO time>"`` (or a bare
ISO time), and a page runs strictly after/before it: keyset pagination, so a page costs
the same wherever it is and a message written meanwhile never shifts the others. The
paging rules (which bound ``before``/``after`` set with ``desc``, when prev/next are given)
are OA's ``get_messages_cursor``. Untrusted clients see only their own messages.

``search_query`` was Postgres full-text search in OA; here every whitespace-separated
term must occur in the text (SQLite LIKE: case-insensitive for ASCII, no stemming, no
ranking), and like OA it needs ``lang``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from api.http import schemas as s
from api.http.errors import HttpError, validation
from api.http.messages import to_messages
from api.http.routing import Api, Call
from api.http.users import SPLIT_UUID, client_scope, frontend_user_id, users_by_id, visible_user
from domain.model.errors import ErrorCode
from projections.queries import messages as q

# Times are stored as POSIX seconds (a double); one written as an ISO time in a cursor
# and read back may differ in the last bit, so "the same time" is within half a microsecond
# (ISO times carry microseconds, and distinct ones differ by at least one).
_SAME = 5e-7


class Filter:
    """OA's list parameters, checked, as a projections.queries.messages.MessageFilter."""

    def __init__(
        self,
        call: Call,
        *,
        user_id: UUID | None = None,
        api_client_id: UUID | None = None,
        only_roots: bool = False,
        deleted: bool | None = False,
        lang: str | None = None,
        search: str | None = None,
        auth_method: str | None = None,
        username: str | None = None,
    ):
        self.query = found = q.MessageFilter()
        scope = client_scope(call, api_client_id)
        if scope is not None:
            found.client(scope)
        if user_id is not None:
            found.user(str(user_id))
        if username or auth_method:
            if not (username and auth_method):
                raise HttpError(
                    "Auth method or username missing.", ErrorCode.AUTH_AND_USERNAME_REQUIRED, 400
                )
            found.named_user(auth_method, username)
        if only_roots:
            found.roots()
        if deleted is not None:
            found.deleted(deleted)
        if lang:
            found.lang(lang)
        if search:
            if not lang:
                raise validation("search_query needs lang")
            found.search(search)

    def between(
        self,
        gte: datetime | None = None,
        gt_id: UUID | None = None,
        lte: datetime | None = None,
        lt_id: UUID | None = None,
    ) -> None:
        """From (gte, gt_id) to (lte, lt_id): with an id, strictly after/before it."""
        for bound, ident in ((gte, gt_id), (lte, lt_id)):
            if bound is None and ident is not None:
                raise HttpError(
                    "Need id and date for keyset pagination", ErrorCode.GENERIC_ERROR, 400
                )
        if gte is not None:
            t = gte.timestamp()
            if gt_id is None:
                self.query.since(t - _SAME)
            else:
                self.query.after(t - _SAME, t + _SAME, str(gt_id))
        if lte is not None:
            t = lte.timestamp()
            if lt_id is None:
                self.query.until(t + _SAME)
            else:
                self.query.before(t + _SAME, t - _SAME, str(lt_id))

    async def rows(self, call: Call, *, desc: bool, limit: int) -> list[tuple]:
        return await call.read(q.filtered, self.query, desc, limit)


async def _items(call: Call, rows: list[tuple]) -> list[s.Message]:
    items = await to_messages(call, rows)
    if call.flag("include_user", False):
        authors = await users_by_id(call, sorted({str(m.user_id) for m in items if m.user_id}))
        for m in items:
            m.user = authors.get(str(m.user_id))
    return items


def _time(raw: str) -> datetime:
    moment = datetime.fromisoformat(raw)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def split_cursor(raw: str | None) -> tuple[datetime | None, UUID | None]:
    if not raw:
        return None, None
    try:
        found = SPLIT_UUID.match(raw)
        if found:
            return _time(found[2]), UUID(found[1])
        return _time(raw), None
    except ValueError:
        raise HttpError(
            f"Invalid cursor value {raw!r}", ErrorCode.INVALID_CURSOR_VALUE, 400
        ) from None


def _common(call: Call, deleted_param: str) -> dict[str, Any]:
    return {
        "only_roots": call.flag("only_roots", False),
        "deleted": None if call.flag(deleted_param, False) else False,
        "lang": call.query("lang") or None,
    }


async def message_list(
    call: Call, deleted_param: str = "include_deleted", **scope: Any
) -> list[s.Message]:
    """OA's plain list: newest first by default, between start_date and end_date."""
    found = Filter(
        call,
        api_client_id=call.uuid_query("api_client_id"),
        **scope,
        **_common(call, deleted_param),
    )
    found.between(gte=call.time_query("start_date"), lte=call.time_query("end_date"))
    rows = await found.rows(
        call, desc=call.flag("desc", True), limit=call.count("max_count", 10, 1000)
    )
    return await _items(call, rows)


async def message_page(call: Call, **scope: Any) -> s.MessagePage:
    """OA's keyset page: ``after`` the next page, ``before`` the previous one."""
    max_count = call.count("max_count", 10, 1000)
    desc = call.flag("desc", False)
    before, after = call.query("before"), call.query("after")
    if desc:
        gte, gt_id = split_cursor(before)
        lte, lt_id = split_cursor(after)
        query_desc = not (before is not None and not after)
    else:
        lte, lt_id = split_cursor(before)
        gte, gt_id = split_cursor(after)
        query_desc = before is not None and not after
    limit = max_count + 1 if before is None or after is None else max_count
    found = Filter(
        call,
        api_client_id=call.uuid_query("api_client_id"),
        **scope,
        search=call.query("search_query"),
        **_common(call, "include_deleted"),
    )
    found.between(gte, gt_id, lte, lt_id)
    rows = await found.rows(call, desc=query_desc, limit=limit)
    count = len(rows)
    if limit > max_count and count == limit:
        rows = rows[:-1]
    if desc != query_desc:
        rows.reverse()
    items = await _items(call, rows)
    prev = next_ = None
    if items:
        if (count > max_count and before) or after:
            prev = f"{items[0].id}${items[0].created_date.isoformat()}"
        if count > max_count or before:
            next_ = f"{items[-1].id}${items[-1].created_date.isoformat()}"
    else:
        if after:
            prev = (lte if desc else gte).isoformat()  # type: ignore[union-attr]
        if before:
            next_ = (gte if desc else lte).isoformat()  # type: ignore[union-attr]
    return s.MessagePage(
        prev=prev, next=next_, sort_key="created_date", order="desc" if desc else "asc", items=items
    )


# ---------------------------------------------------------------- endpoints
async def list_messages(call: Call) -> Any:
    return await message_list(
        call,
        "allow_deleted",
        auth_method=call.query("auth_method"),
        username=call.query("username"),
    )


async def messages_cursor(call: Call) -> Any:
    return await message_page(
        call,
        user_id=call.uuid_query("user_id"),
        auth_method=call.query("auth_method"),
        username=call.query("username"),
    )


async def _user(call: Call) -> UUID:
    user_id = call.path_id("user_id", ErrorCode.USER_NOT_FOUND, "user")
    await visible_user(call, user_id)
    return user_id


async def user_messages(call: Call) -> Any:
    return await message_list(call, user_id=await _user(call))


async def user_messages_cursor(call: Call) -> Any:
    return await message_page(call, user_id=await _user(call))


async def frontend_user_messages(call: Call) -> Any:
    return await message_list(call, user_id=await frontend_user_id(call))


async def frontend_user_messages_cursor(call: Call) -> Any:
    return await message_page(call, user_id=await frontend_user_id(call))


_FILTERS = {
    "api_client_id": "trusted clients: another client's (untrusted: their own only)",
    "only_roots": "default false",
    "lang": "language",
    "max_count": "1..1000, default 10",
    "include_user": "add each author (default false)",
}
_LIST = {
    **_FILTERS,
    "start_date": "ISO time, inclusive",
    "end_date": "ISO time, inclusive",
    "desc": "default true",
    "include_deleted": "default false",
}
_PAGE = {
    **_FILTERS,
    "before": "cursor '<uuid>$<ISO time>': the page before",
    "after": "cursor: the page after",
    "desc": "default false",
    "include_deleted": "default false",
    "search_query": "terms that must all occur in the text (needs lang)",
}


def register(api: Api) -> None:
    """Before messages.register: /messages/cursor must not be taken for a message id."""
    add = api.add
    m = "/api/v1/messages"
    add(
        "GET",
        m + "/",
        list_messages,
        response=list[s.Message],
        tag="messages",
        query={
            **{k: v for k, v in _LIST.items() if k != "include_deleted"},
            "allow_deleted": "default false",
            "auth_method": "with username: the author",
            "username": "with auth_method: the author",
        },
        summary="messages, newest first (untrusted clients: their own)",
    )
    add(
        "GET",
        m + "/cursor",
        messages_cursor,
        response=s.MessagePage,
        tag="messages",
        query={
            **_PAGE,
            "user_id": "the author",
            "auth_method": "with username: the author",
            "username": "with auth_method: the author",
        },
        summary="a keyset page of messages by created date",
    )
    _register_user_lists(api)


def _register_user_lists(api: Api) -> None:
    add = api.add
    u = "/api/v1/users/{user_id}/messages"
    add(
        "GET",
        u,
        user_messages,
        response=list[s.Message],
        query=_LIST,
        tag="users",
        summary="a user's messages, newest first",
    )
    add(
        "GET",
        u + "/cursor",
        user_messages_cursor,
        response=s.MessagePage,
        query=_PAGE,
        tag="users",
        summary="a keyset page of a user's messages",
    )
    f = "/api/v1/frontend_users/{auth_method}/{username}/messages"
    add(
        "GET",
        f,
        frontend_user_messages,
        response=list[s.Message],
        query=_LIST,
        tag="users",
        summary="a front-end user's messages, newest first",
    )
    add(
        "GET",
        f + "/cursor",
        frontend_user_messages_cursor,
        response=s.MessagePage,
        query=_PAGE,
        tag="users",
        summary="a keyset page of a front-end user's messages",
    )
