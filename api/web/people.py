"""What annotators do beside tasks: emoji reactions, reports, the markdown preview,
their own history and statistics, and the leaderboard."""

from __future__ import annotations

import sqlite3
from typing import Any
from uuid import UUID

from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from api.web import render
from api.web.site import Ctx, Site, redirect
from domain.model.errors import MessageNotFoundError
from domain.model.labels import LABELS, REPORT_LABELS
from projections import leaderboard
from projections.queries import messages as message_queries

EMOJIS = {"+1": "👍", "-1": "👎", "red_flag": "🚩"}


def _message_id(ctx: Ctx) -> UUID:
    raw = ctx.request.path_params["message_id"]
    try:
        return UUID(raw)
    except ValueError:
        raise MessageNotFoundError(f"message {raw} not found") from None


def _back(ctx: Ctx) -> str:
    back = ctx.field("back") or "/"
    return back if back.startswith("/") and not back.startswith("//") else "/"


async def emoji(ctx: Ctx) -> Response:
    message_id, name = _message_id(ctx), ctx.field("emoji")
    service = ctx.site.service
    tree_id = await ctx.site.blocking(service.tree_of, message_id)
    position = await ctx.site.blocking(
        service.app.toggle_emoji,
        tree_id=tree_id,
        message_id=message_id,
        emoji=name,
        actor=ctx.actor,
    )
    await ctx.site.catch_up(position)
    return redirect(_back(ctx), f"Reaction {EMOJIS.get(name, name)} recorded.")


async def report_form(ctx: Ctx) -> Response:
    message_id = _message_id(ctx)
    text = await ctx.site.read(message_queries.live_text, str(message_id))
    if text is None:
        raise MessageNotFoundError(f"message {message_id} not found")
    labels = [LABELS[n] for n in REPORT_LABELS]
    return ctx.render(
        "report.html", message_id=message_id, text=text, labels=labels, back=_back(ctx)
    )


async def report(ctx: Ctx) -> Response:
    message_id = _message_id(ctx)
    labels = {n.value: 1.0 for n in REPORT_LABELS if ctx.field(f"label_{n.value}") == "1"}
    service = ctx.site.service
    tree_id = await ctx.site.blocking(service.tree_of, message_id)
    outcome = await ctx.site.blocking(
        service.app.submit_labels,
        actor=ctx.actor,
        tree_id=tree_id,
        message_id=message_id,
        labels=labels,
        kind="report",
    )
    await ctx.site.catch_up(outcome.position)
    return redirect(_back(ctx), "Thanks: the moderators will see your report.")


async def preview(ctx: Ctx) -> Response:
    """The markdown preview of a draft (same renderer as the pages: raw HTML stays text)."""
    return HTMLResponse(render.markdown_once(ctx.field("text")[:20000]))


def _my_messages(conn: sqlite3.Connection, user_id: str) -> list[dict[str, Any]]:
    rows = message_queries.recent_by_user(conn, user_id, 50)
    keys = (
        "id",
        "tree_id",
        "role",
        "text",
        "created_at",
        "review_result",
        "rank",
        "emojis",
        "deleted",
    )
    return [dict(zip(keys, r)) for r in rows]


async def me(ctx: Ctx) -> Response:
    site, now = ctx.site, ctx.site.service.app.now()
    stats = await site.read(leaderboard.user_stats, ctx.user_id, now)
    messages = await site.read(_my_messages, str(ctx.user_id))
    return ctx.render("me.html", stats=stats, messages=messages)


async def board(ctx: Ctx) -> Response:
    frame = leaderboard.check_time_frame(ctx.request.query_params.get("time_frame", "total"))
    site = ctx.site
    data = await site.read(
        leaderboard.leaderboard,
        frame,
        site.service.app.now(),
        max_count=100,
        highlighted_user_id=ctx.user_id,
    )
    return ctx.render("leaderboard.html", board=data, frame=frame)


def routes(site: Site) -> list[Route]:
    p = site.page
    return [
        Route("/messages/{message_id}/emoji", p(emoji), methods=["POST"]),
        Route("/messages/{message_id}/report", p(report_form), methods=["GET"]),
        Route("/messages/{message_id}/report", p(report), methods=["POST"]),
        Route("/preview", p(preview), methods=["POST"]),
        Route("/me", p(me), methods=["GET"]),
        Route("/leaderboard", p(board), methods=["GET"]),
    ]
