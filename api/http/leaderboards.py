"""Users' statistics, leaderboards, the troll board (OA), and model/annotator quality
(beyond OA), all read from the statistics read models: the projections' own read
functions, run on an aiosqlite connection's thread (``call.read``)."""

from __future__ import annotations

from typing import Any

from api.http.routing import Api, Call
from api.http.users import visible_user
from domain.model.errors import ErrorCode
from projections import agreement, arena, leaderboard


def _count(call: Call, default: int = 100) -> int:
    return call.count("max_count", default, 10_000)  # 1..10,000 (a huge one overflowed SQLite)


async def user_stats(call: Call) -> Any:
    user_id = call.path_id("user_id", ErrorCode.USER_NOT_FOUND, "user")
    await visible_user(call, user_id)  # another client's user is not found (no name leaks)
    return await call.read(leaderboard.user_stats, user_id, call.service.app.now())


async def user_stats_frame(call: Call) -> Any:
    time_frame = leaderboard.check_time_frame(call.request.path_params["time_frame"])
    return (await user_stats(call))[time_frame]


async def board(call: Call) -> Any:
    viewer = call.header_actor(required=False)
    return await call.read(
        leaderboard.leaderboard,
        call.request.path_params["time_frame"],
        call.service.app.now(),
        max_count=_count(call),
        highlighted_user_id=viewer.user_id if viewer else None,
    )


async def trolls(call: Call) -> Any:
    enabled = call.query("enabled")
    return await call.read(
        leaderboard.trollboard,
        call.request.path_params["time_frame"],
        call.service.app.now(),
        max_count=_count(call),
        enabled=None if enabled is None else enabled.lower() in ("1", "true", "yes"),
    )


def _rounds(call: Call) -> int:
    """Bootstrap resamples for the arena's intervals (0: no intervals, just the fit)."""
    raw = call.query("rounds", str(arena.bradley_terry.ROUNDS)) or ""
    if not raw.isdigit() or int(raw) > 5000:
        from api.http.errors import validation

        raise validation(f"rounds must be an integer from 0 to 5000, not {raw!r}")
    return int(raw)


async def models(call: Call) -> Any:
    return await call.read(arena.model_leaderboard, _rounds(call))


async def model_arena(call: Call) -> Any:
    return await call.read(arena.arena_leaderboard, _rounds(call))


async def annotator_agreement(call: Call) -> Any:
    raw = call.query("min_rankings") or "1"
    if not raw.isdigit():
        from api.http.errors import validation

        raise validation(f"min_rankings must be a positive integer, not {raw!r}")
    return await call.read(agreement.agreement, min_rankings=int(raw))


def register(api: Api) -> None:
    add = api.add
    add(
        "GET",
        "/api/v1/users/{user_id}/stats",
        user_stats,
        response=dict[str, dict[str, Any]],
        tag="users",
        summary="the user's scores per time frame (day, week, month, total)",
    )
    add(
        "GET",
        "/api/v1/users/{user_id}/stats/{time_frame}",
        user_stats_frame,
        response=dict[str, Any],
        tag="users",
        summary="the user's score in one time frame",
    )
    add(
        "GET",
        "/api/v1/leaderboards/{time_frame}",
        board,
        response=dict[str, Any],
        query={"max_count": "default 100"},
        tag="leaderboards",
        summary="top users by leader score (day, week, month, total)",
    )
    add(
        "GET",
        "/api/v1/trollboards/{time_frame}",
        trolls,
        access="trusted",
        response=dict[str, Any],
        query={"max_count": "default 100", "enabled": "filter"},
        tag="leaderboards",
        summary="users by troll score",
    )
    _register_models(api)


def _register_models(api: Api) -> None:
    """Beyond OA: models against people, and the annotators' agreement."""
    add = api.add
    add(
        "GET",
        "/api/v1/models/leaderboard",
        models,
        response=list[dict[str, Any]],
        query={"rounds": "bootstrap resamples, default 200"},
        tag="models",
        summary="per model: replies, acceptance, mean rank, win rate vs humans, "
        "Bradley-Terry strength with a 95% interval, votes, voters (beyond OA)",
    )
    add(
        "GET",
        "/api/v1/models/arena",
        model_arena,
        response=dict[str, Any],
        query={"rounds": "bootstrap resamples, default 200"},
        tag="models",
        summary="models and people as players: Bradley-Terry strengths with bootstrap "
        "intervals over trees, the pairwise win-rate matrix, position bias (beyond OA)",
    )
    add(
        "GET",
        "/api/v1/stats/agreement",
        annotator_agreement,
        response=dict[str, Any],
        query={"min_rankings": "default 1"},
        tag="stats",
        summary="annotator agreement: Kendall tau per ranker, Krippendorff alpha per label "
        "(beyond OA)",
    )
