"""Who is calling: the API client behind ``X-API-Key``, root tokens, and the end user.

Access levels: ``public`` (no key), ``client`` (any enabled key), ``trusted`` (a trusted
client: moderation and admin) and ``root`` (``Authorization: Bearer <root token>``, for
creating API clients). Keys are looked up by their hash (domain.model.api_client). End users
are not authenticated here, as in OA: the client asserts who they are, in the body
(``user``) or in the ``x-oasst-user: <auth_method>:<id>`` header.
"""

from __future__ import annotations

import secrets
from typing import Literal

from starlette.requests import Request

from api.http.errors import HttpError, not_authorized, root_not_authorized, validation
from domain.model.api_client import ApiClient
from domain.model.errors import ErrorCode
from domain.model.input_rules import check_username

Access = Literal["public", "client", "trusted", "root"]
AUTH_METHODS = ("discord", "google", "local", "system")


def api_key(request: Request) -> str | None:
    """The key from ``X-API-Key`` only. OA also read ``?api_key=``; a key in the URL is
    written into access logs, proxies' logs and browser histories, so it is refused."""
    if "api_key" in request.query_params:
        raise not_authorized(
            "send the API key in the X-API-Key header, never in the URL (api_key= is refused)"
        )
    return request.headers.get("x-api-key")


def check_client(client: ApiClient | None, access: Access) -> None:
    if access in ("public", "root"):
        return
    if client is None:
        raise not_authorized()
    if access == "trusted" and not client.trusted:
        raise not_authorized("this endpoint needs a trusted API client")


def check_root(request: Request, tokens: frozenset[str]) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise root_not_authorized()
    # Compare against every token, so the time taken does not tell which one was close.
    matched = False
    for known in tokens:
        matched |= secrets.compare_digest(known.encode(), token.strip().encode())
    if not matched:
        raise root_not_authorized()


def header_user(request: Request) -> tuple[str, str] | None:
    """``(auth_method, username)`` from ``x-oasst-user`` (or query ``oasst_user``); a header
    that is there must be valid, even empty (the username follows domain.model.input_rules)."""
    raw = request.headers.get("x-oasst-user")
    if raw is None:
        raw = request.query_params.get("oasst_user")
    if raw is None:
        return None
    auth_method, sep, username = raw.partition(":")
    if not sep or not username or auth_method not in AUTH_METHODS:
        raise validation(
            f"x-oasst-user must be '<auth_method>:<id>' with auth_method one of "
            f"{', '.join(AUTH_METHODS)}, not {raw!r}"
        )
    check_username(username)
    return auth_method, username


def require_header_user(request: Request) -> tuple[str, str]:
    found = header_user(request)
    if found is None:
        raise HttpError(
            "this request needs the x-oasst-user header", ErrorCode.USER_NOT_SPECIFIED, 400
        )
    return found


def check_owner(client: ApiClient, owner_client_id: object) -> None:
    """Untrusted clients see only their own users' messages (OA forces their client id)."""
    if (
        not client.trusted
        and owner_client_id is not None
        and str(owner_client_id) != str(client.id)
    ):
        raise not_authorized("this message belongs to another API client")
