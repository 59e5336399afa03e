"""Leaderboards, the troll board, a user's stats per time frame, tree-state counts.

Everything here is a query over the read model at a given ``now``; the answers are plain
dicts shaped like OA's UserScore / LeaderboardStats / TrollScore / TrollboardStats.
Ranks follow OA's ROW_NUMBER() over (score desc, user_id): the leader rank among users
who show on the leaderboard and are enabled, the troll rank among everyone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from domain.model.errors import DomainError, ErrorCode, UserNotFoundError
from domain.model.states import TreeState
from projections.stats_rules import (
    FIELDS,
    LABEL_SCALE,
    LEADER_FIELDS,
    MEAN_LABELS,
    STREAK_TIMEOUT,
    TROLL_LABELS,
    has_leader_stats,
    has_troll_stats,
    hour_of,
    leader_score,
    level,
    troll_score,
)

TIME_FRAMES = ("day", "week", "month", "total")
MAX_COUNT = 10000  # OA's limit on max_count

_USER_COLUMNS = (
    "user_id",
    "username",
    "auth_method",
    "display_name",
    "enabled",
    "deleted",
    "show_on_leaderboard",
)

InvalidStatsQueryError = type(
    "InvalidStatsQueryError",
    (DomainError,),
    {"error_code": ErrorCode.VALIDATION_ERROR, "http_status": 422},
)


def as_utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def check_time_frame(time_frame: str) -> str:
    if time_frame not in TIME_FRAMES:
        raise InvalidStatsQueryError(
            f"unknown time frame {time_frame!r}; expected one of {', '.join(TIME_FRAMES)}"
        )
    return time_frame


def window_start(time_frame: str, now: datetime) -> datetime | None:
    """OA's base_date of the time frame (None for total)."""
    check_time_frame(time_frame)
    now = as_utc(now)
    if time_frame == "day":
        return now - timedelta(days=1)
    if time_frame == "total":
        return None
    day = now.date() - timedelta(days=7 if time_frame == "week" else 30)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def frame_totals(
    conn: sqlite3.Connection, time_frame: str, now: datetime, user_id: str | UUID | None = None
) -> dict[str, dict[str, float]]:
    """user_id -> summed counters over the time frame, for users with any counter there."""
    start = window_start(time_frame, now)
    where: list[str] = []
    args: list[int | str] = []
    if start is not None:
        where.append("hour >= ?")
        args.append(hour_of(start.timestamp()))
    if user_id is not None:
        where.append("user_id = ?")
        args.append(str(user_id))
    sql = (
        f"SELECT user_id, {', '.join(f'sum({f})' for f in FIELDS)} FROM user_hours"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " GROUP BY user_id"
    )
    return {row[0]: dict(zip(FIELDS, row[1:])) for row in conn.execute(sql, args)}


def streaks(
    conn: sqlite3.Connection, now: datetime, user_ids: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """user_id -> streak_days, streak_last_day_date, last_activity_date as of ``now``.

    A user inactive for more than 36 hours has no streak (OA's periodic reset).
    """
    cutoff = as_utc(now).timestamp() - STREAK_TIMEOUT
    sql = "SELECT user_id, last_activity, streak_start, streak_days FROM user_streaks"
    args: list[str] = []
    if user_ids is not None:
        args = list(user_ids)
        sql += f" WHERE user_id IN ({', '.join('?' * len(args))})"
    out = {}
    for user_id, last, start, days in conn.execute(sql, args):
        expired = last < cutoff
        out[user_id] = {
            "streak_days": 0 if expired else days,
            "streak_last_day_date": None if expired else iso(start),
            "last_activity_date": iso(last),
        }
    return out


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _check_count(max_count: int) -> int:
    if not 1 <= max_count <= MAX_COUNT:
        raise InvalidStatsQueryError(f"max_count must be within 1..{MAX_COUNT}, got {max_count}")
    return max_count


def _users(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    return {
        row[0]: dict(zip(_USER_COLUMNS, row))
        for row in conn.execute(f"SELECT {', '.join(_USER_COLUMNS)} FROM users")
    }


def _ranked(
    totals: Mapping[str, Mapping[str, float]],
    users: Mapping[str, Mapping[str, Any]],
) -> list[tuple[int, str, int]]:
    """(rank, user_id, score) of the users a leaderboard shows, best first."""
    scores = [
        (leader_score(s), user_id)
        for user_id, s in totals.items()
        if has_leader_stats(s)
        and user_id in users
        and users[user_id]["show_on_leaderboard"]
        and users[user_id]["enabled"]
    ]
    scores.sort(key=lambda x: (-x[0], x[1]))
    return [(rank, user_id, score) for rank, (score, user_id) in enumerate(scores, start=1)]


def _user_score(
    user: Mapping[str, Any],
    stats: Mapping[str, float] | None,
    rank: int | None,
    base: datetime | None,
    now: datetime,
    streak: Mapping[str, Any] | None,
    highlighted: str | None,
) -> dict[str, Any]:
    score = leader_score(stats) if stats else 0
    out: dict[str, Any] = {
        "rank": rank,
        "user_id": user["user_id"],
        "username": user["username"],
        "auth_method": user["auth_method"],
        "display_name": user["display_name"],
        "highlighted": user["user_id"] == highlighted,
        "leader_score": score,
        # OA shows level 0 for a user without stats in the time frame.
        "level": level(score) if stats and has_leader_stats(stats) else 0,
        "base_date": base.isoformat() if base else None,
        "modified_date": now.isoformat(),
    }
    for name in LEADER_FIELDS:
        out[name] = int(stats[name]) if stats else 0
    out["rankings_good"] = 0
    out.update(
        streak or {"streak_days": 0, "streak_last_day_date": None, "last_activity_date": None}
    )
    return out


def leaderboard(
    conn: sqlite3.Connection,
    time_frame: str,
    now: datetime,
    *,
    max_count: int = 100,
    highlighted_user_id: str | UUID | None = None,
) -> dict[str, Any]:
    """OA's GET /leaderboards/{time_frame}: the top ``max_count`` UserScores."""
    _check_count(max_count)
    now, base = as_utc(now), window_start(time_frame, now)
    totals, users = frame_totals(conn, time_frame, now), _users(conn)
    top = _ranked(totals, users)[:max_count]
    streak = streaks(conn, now, [u for _, u, _ in top])
    highlighted = str(highlighted_user_id) if highlighted_user_id else None
    return {
        "time_frame": time_frame,
        "last_updated": now.isoformat(),
        "leaderboard": [
            _user_score(users[u], totals[u], rank, base, now, streak.get(u), highlighted)
            for rank, u, _ in top
        ],
    }


def user_stats(
    conn: sqlite3.Connection, user_id: str | UUID, now: datetime
) -> dict[str, dict[str, Any]]:
    """OA's GET /users/{id}/stats: time frame -> the user's UserScore."""
    now, user_id = as_utc(now), str(user_id)
    users = _users(conn)
    if user_id not in users:
        raise UserNotFoundError(f"user {user_id} not found")
    streak = streaks(conn, now, [user_id]).get(user_id)
    out = {}
    for time_frame in TIME_FRAMES:
        totals = frame_totals(conn, time_frame, now)
        rank = next((r for r, u, _ in _ranked(totals, users) if u == user_id), None)
        out[time_frame] = _user_score(
            users[user_id],
            totals.get(user_id),
            rank,
            window_start(time_frame, now),
            now,
            streak,
            user_id,
        )
    return out


def trollboard(
    conn: sqlite3.Connection,
    time_frame: str,
    now: datetime,
    *,
    max_count: int = 100,
    enabled: bool | None = None,
    highlighted_user_id: str | UUID | None = None,
) -> dict[str, Any]:
    """OA's GET /trollboards/{time_frame}: users by troll score, worst first.

    Ranked over every user with troll stats; ``enabled`` then filters what is listed.
    """
    _check_count(max_count)
    now, base = as_utc(now), window_start(time_frame, now)
    totals, users = frame_totals(conn, time_frame, now), _users(conn)
    scored = sorted(
        ((troll_score(s), u) for u, s in totals.items() if has_troll_stats(s) and u in users),
        key=lambda x: (-x[0], x[1]),
    )
    highlighted = str(highlighted_user_id) if highlighted_user_id else None
    rows = []
    for rank, (score, user_id) in enumerate(scored, start=1):
        user = users[user_id]
        if enabled is not None and bool(user["enabled"]) != enabled:
            continue
        s = totals[user_id]
        row: dict[str, Any] = {
            "rank": rank,
            "user_id": user_id,
            "username": user["username"],
            "auth_method": user["auth_method"],
            "display_name": user["display_name"],
            "enabled": bool(user["enabled"]),
            "deleted": bool(user["deleted"]),
            "show_on_leaderboard": bool(user["show_on_leaderboard"]),
            "highlighted": user_id == highlighted,
            "troll_score": score,
            "base_date": base.isoformat() if base else None,
            "modified_date": now.isoformat(),
        }
        for name in ("red_flags", "upvotes", "downvotes", "spam_prompts") + TROLL_LABELS:
            row[name] = int(s[name])
        row["lang_mismach"] = row["lang_mismatch"]  # OA's TrollScore spells it so
        for name in MEAN_LABELS:
            n = s[f"{name}_n"]
            row[name] = s[f"{name}_sum"] / LABEL_SCALE / n if n else None
        rows.append(row)
        if len(rows) == max_count:
            break
    if rows:
        last = streaks(conn, now, [r["user_id"] for r in rows])
        for r in rows:
            r["last_activity_date"] = last.get(r["user_id"], {}).get("last_activity_date")
    return {"time_frame": time_frame, "last_updated": now.isoformat(), "trollboard": rows}


def tree_state_counts(conn: sqlite3.Connection) -> dict[str, Any]:
    """Trees per state (every state listed), overall and per language."""
    total = {s.value: 0 for s in TreeState}
    by_lang: dict[str, dict[str, int]] = {}
    for lang, state, n in conn.execute(
        "SELECT lang, state, count(*) FROM trees GROUP BY lang, state ORDER BY lang, state"
    ):
        total[state] = total.get(state, 0) + n
        by_lang.setdefault(lang, {s.value: 0 for s in TreeState})[state] = n
    return {"state_counts": total, "by_lang": by_lang}
