"""Query and path parameters: the formats the server enforces, in one table that both the
OpenAPI document (api.http.openapi) and the request check (``check_query``, run by
api.http.routing before every handler) read, so the document cannot promise what the
server does not check, nor the server refuse what the document allows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from starlette.requests import Request

from api.http.auth import AUTH_METHODS
from api.http.errors import validation
from domain.model.input_rules import MAX_DISPLAY_NAME_LENGTH, MAX_USERNAME_LENGTH
from projections.leaderboard import TIME_FRAMES
from projections.oa_queries import CACHED_STATS

_UUID = {"type": "string", "format": "uuid"}
_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_USERNAME_LENGTH}
# Path parameters by name; any other ``*_id`` is a UUID (an unknown or malformed one: 404).
_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "auth_method": {"type": "string", "enum": list(AUTH_METHODS)},
    "username": _NAME,
    "frontend_id": {"type": "string", "minLength": 1},
    "time_frame": {"type": "string", "enum": list(TIME_FRAMES)},
    "name": {"type": "string", "enum": list(CACHED_STATS)},
}
_BOOLEAN = {"type": "boolean"}
_TIME = {"type": "string", "format": "date-time"}
# Query parameters by name, as Call.flag/count/uuid_query/time_query parse them.
_QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    **dict.fromkeys(
        (
            "allow_deleted",
            "ban",
            "desc",
            "enabled",
            "halt",
            "include_deleted",
            "include_spam",
            "include_user",
            "only_active",
            "only_roots",
            "preview",
            "purge_initial_prompts",
            "show_on_leaderboard",
            "tos_acceptance",
        ),
        _BOOLEAN,
    ),
    **dict.fromkeys(("api_client_id", "gt_id", "lt_id", "user_id", "message_id"), _UUID),
    **dict.fromkeys(("start_date", "end_date", "min_date", "max_date"), _TIME),
    "window_size": {"type": "integer", "minimum": 1, "maximum": 100},
    "rounds": {"type": "integer", "minimum": 0, "maximum": 5000},
    "min_rankings": {"type": "integer", "minimum": 1},
    "as_of": {"anyOf": [{"type": "integer", "minimum": 0}, _TIME]},
    "position": {"type": "integer", "minimum": 0},
    "auth_method": {"type": "string", "enum": list(AUTH_METHODS)},
    "sort_key": {"type": "string", "enum": ["username", "display_name"]},
    "username": _NAME,
    "display_name": {"type": "string", "minLength": 1, "maxLength": MAX_DISPLAY_NAME_LENGTH},
}


def _max_count(path: str) -> dict[str, Any]:
    """``max_count``: message lists take up to 1,000, the others up to 10,000 (Call.count)."""
    most = (
        1000
        if path.startswith(("/api/v1/messages", "/api/v1/users/{user_id}/messages"))
        else 10_000
    )
    return {"type": "integer", "minimum": 1, "maximum": most}


def query_schema(path: str, name: str) -> dict[str, Any]:
    if name == "max_count":
        return _max_count(path)
    return _QUERY_SCHEMAS.get(name, {"type": "string"})


def path_schema(name: str) -> dict[str, Any]:
    return _PATH_SCHEMAS.get(name, _UUID if name.endswith("_id") else {"type": "string"})


# checked by their handlers, which answer OA's own error (sort_key: 400, error_code 100)
_HANDLER_CHECKED = frozenset({"sort_key"})
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")  # as Call.flag reads


def check_query(path: str, names: Any, request: Request) -> None:
    """Each declared query parameter present in ``request`` against its schema (422)."""
    params = request.query_params
    for name in names:
        if name in _HANDLER_CHECKED:
            continue
        raw = params.get(name)
        if raw is not None:
            problem = _problem(query_schema(path, name), raw)
            if problem:
                raise validation(f"query parameter {name} must be {problem}, not {raw!r}")


def _problem(schema: dict[str, Any], raw: str) -> str | None:
    kind, fmt = schema.get("type"), schema.get("format")
    if "anyOf" in schema:
        found = [_problem(option, raw) for option in schema["anyOf"]]
        return None if None in found else " or ".join(p for p in found if p)
    if kind == "boolean":
        return None if raw.lower() in _TRUE + _FALSE else "true or false"
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        span = f"an integer in {low}..{high if high is not None else ''}"
        try:
            value = int(raw)
        except ValueError:
            return span
        too_low = low is not None and value < low
        return span if too_low or (high is not None and value > high) else None
    if "enum" in schema:
        return None if raw in schema["enum"] else "one of " + ", ".join(schema["enum"])
    if fmt == "uuid":
        try:
            UUID(raw)
        except ValueError:
            return "a UUID"
        return None
    if fmt == "date-time":
        try:
            datetime.fromisoformat(raw)
        except ValueError:
            return "an ISO 8601 time"
        return None
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if len(raw) < low or (high is not None and len(raw) > high):
        return f"{low}..{high if high is not None else ''} characters long"
    return None
