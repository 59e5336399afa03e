"""OA's statistics endpoints beyond the tree manager's counts: system stats, the tree
manager's summary, the cached statistics, leaderboard updates and a user's window.

OA recomputes its cached statistics and leaderboards on timers and serves the last
result; here they are read models, current with the log. So the "update" endpoints
change nothing and answer as OA does (204), and every ``last_updated`` is now.
"""

from __future__ import annotations

from typing import Any

from api.http.errors import HttpError
from api.http.routing import Api, Call
from api.http.users import visible_user
from domain.model.errors import ErrorCode
from projections import leaderboard
from projections import oa_queries as q


async def system_stats(call: Call) -> Any:
    return await call.read(q.system_stats)


async def tree_manager(call: Call) -> Any:
    return {
        "state_counts": await call.read(q.state_counts),
        "message_counts": await call.read(q.message_counts, call.flag("only_active", True)),
    }


def _cached(name: str, stats: Any, now: str) -> dict[str, Any]:
    return {"name": name, "last_updated": now, "stats": stats}


async def cached_one(call: Call) -> Any:
    name = call.request.path_params["name"]
    if name not in q.CACHED_STATS:
        raise HttpError(
            f"unknown cached statistics {name!r}; one of {', '.join(q.CACHED_STATS)}",
            ErrorCode.VALIDATION_ERROR,
            422,
        )
    return _cached(name, await call.read(q.cached_stats, name), call.service.app.now().isoformat())


async def cached_all(call: Call) -> Any:
    now = call.service.app.now().isoformat()
    return {
        "stats_by_name": {
            name: _cached(name, await call.read(q.cached_stats, name), now)
            for name in q.CACHED_STATS
        }
    }


def _no_update(name: str) -> Any:
    """Read models are always current: an update has nothing to do (204, as OA answers)."""

    async def no_update(call: Call) -> None:
        time_frame = call.request.path_params.get("time_frame")
        if time_frame is not None:
            leaderboard.check_time_frame(time_frame)

    no_update.__name__ = name  # one OpenAPI operation id per path
    return no_update


async def stats_window(call: Call) -> Any:
    user_id = call.path_id("user_id", ErrorCode.USER_NOT_FOUND, "user")
    await visible_user(call, user_id)  # another client's user is not found
    time_frame = leaderboard.check_time_frame(call.request.path_params["time_frame"])
    window = call.count("window_size", 5, 100)
    return await call.read(q.stats_window, user_id, time_frame, call.service.app.now(), window)


def register(api: Api) -> None:
    add = api.add
    add(
        "GET",
        "/api/v1/stats/",
        system_stats,
        access="trusted",
        response=dict[str, Any],
        summary="messages (all, active, by language, deleted) and trees",
        tag="stats",
    )
    add(
        "GET",
        "/api/v1/stats/tree_manager",
        tree_manager,
        access="trusted",
        response=dict[str, Any],
        query={"only_active": "default true"},
        summary="trees per state and messages per tree",
        tag="stats",
    )
    add(
        "GET",
        "/api/v1/stats/cached",
        cached_all,
        response=dict[str, Any],
        summary="every cached statistic (current: read models)",
        tag="stats",
    )
    add(
        "GET",
        "/api/v1/stats/cached/{name}",
        cached_one,
        response=dict[str, Any],
        summary="one cached statistic: " + ", ".join(q.CACHED_STATS),
        tag="stats",
    )
    for path, name in (
        ("/api/v1/stats/cached/update", "update_cached_stats"),
        ("/api/v1/leaderboards/update", "update_leaderboards"),
        ("/api/v1/leaderboards/update/{time_frame}", "update_leaderboard"),
    ):
        add(
            "POST",
            path,
            _no_update(name),
            access="trusted",
            status=204,
            summary="nothing to do: the statistics are current read models (204 as OA)",
            tag="stats",
        )
    add(
        "GET",
        "/api/v1/users/{user_id}/stats/{time_frame}/window",
        stats_window,
        response=dict[str, Any],
        query={"window_size": "1..100, default 5"},
        summary="the leaderboard around the user",
        tag="users",
    )
