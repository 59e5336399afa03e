"""Front-end users (create/update, look up) and API-client administration.

A user is unique per (API client, auth_method, id), so a client can only ever name its
own users: the user id is derived from the client's id (domain.user.user_id_for).
"""

from __future__ import annotations

from typing import Any

from api.http import schemas as s
from api.http.routing import Api, Call
from domain.user import User


def frontend_user(user: User) -> s.FrontEndUser:
    return s.FrontEndUser(
        id=user.username, display_name=user.display_name, auth_method=user.auth_method,
        user_id=user.id, enabled=user.enabled, deleted=user.deleted, notes=user.notes or "",
        created_date=user.created_on, show_on_leaderboard=user.show_on_leaderboard,
        tos_acceptance_date=user.tos_accepted_at)


def create_or_update(call: Call) -> Any:
    req: s.CreateFrontendUserRequest = call.json(s.CreateFrontendUserRequest)
    app = call.service.app
    profile: dict[str, Any] = {"show_on_leaderboard": req.show_on_leaderboard,
                               "enabled": req.enabled, "notes": req.notes}
    if req.tos_acceptance:
        existing = _existing(call, req.auth_method, req.id)
        if existing is None or existing.tos_accepted_at is None:
            profile["tos_accepted_at"] = app.now()
    actor = call.user(req, **profile)
    call.settle(call.service.position_of(actor.user_id))
    return frontend_user(app.get_user(actor.user_id))


def _existing(call: Call, auth_method: str, username: str) -> User | None:
    from domain.errors import UserNotFoundError

    try:
        return call.service.app.get_user(call.service.user_id(call.api_client, auth_method, username))
    except UserNotFoundError:
        return None


def get_frontend_user(call: Call) -> Any:
    auth_method = call.request.path_params["auth_method"]
    username = call.request.path_params["username"]
    user_id = call.service.user_id(call.api_client, auth_method, username)
    return frontend_user(call.service.app.get_user(user_id))


def create_api_client(call: Call) -> Any:
    req: s.CreateApiClientRequest = call.json(s.CreateApiClientRequest)
    app = call.service.app
    client_id, key = app.register_client(
        name=req.description, api_key=req.api_key, trusted=req.trusted,
        frontend_type=req.frontend_type, description=req.description, admin_email=req.admin_email)
    if not req.enabled:
        app.change_client_access(client_id, enabled=False)
    return key  # OA answers with the bare key as a JSON string


def register(api: Api) -> None:
    api.add("POST", "/api/v1/frontend_users/", create_or_update, body=s.CreateFrontendUserRequest,
            response=s.FrontEndUser, summary="create or update a front-end user", tag="users")
    api.add("GET", "/api/v1/frontend_users/{auth_method}/{username}", get_frontend_user,
            response=s.FrontEndUser, summary="a front-end user", tag="users")
    api.add("POST", "/api/v1/admin/api_client", create_api_client, access="root",
            body=s.CreateApiClientRequest, response=str,
            summary="create an API client (Authorization: Bearer <root token>)", tag="admin")
