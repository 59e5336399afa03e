"""Moderators' pages: the tree browser, a tree with everything about each message, its
event history and the tree as of any version (the audit read side), moderation acts
(halt/resume, delete/undelete, edit), the troll board and reported messages."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from starlette.responses import Response
from starlette.routing import Route

from api.web.site import Ctx, Site, redirect
from domain.model.errors import MessageNotFoundError, TreeNotFoundError
from domain.model.states import TreeState
from projections import leaderboard
from projections.audit.history import history, tree_as_of, tree_view
from projections.queries import moderation as mq
from projections.queries import users


async def trees(ctx: Ctx) -> Response:
    q = ctx.request.query_params
    text = q.get("q", "").strip()
    where = {
        "state": q.get("state", ""),
        "lang": q.get("lang", ""),
        "q": mq.like_pattern(text) if text else "",
        "user": q.get("user", "").strip(),
    }
    rows = await ctx.site.read(mq.browse_trees, **where)
    states = [s.value for s in TreeState]
    return ctx.render("mod_trees.html", rows=rows, where={**where, "q": text}, states=states)


def _tree_id(ctx: Ctx) -> UUID:
    raw = ctx.request.path_params["tree_id"]
    try:
        return UUID(raw)
    except ValueError:
        raise TreeNotFoundError(f"tree {raw} not found") from None


def _tree_now(service: Any, tree_id: UUID) -> dict[str, Any]:
    """``tree_as_of`` for the current version: the view is built under the tree's lock
    from the cached aggregate (no copy of it: the copy cost more than the page)."""
    view = service.app.view_tree(tree_id, tree_view)
    view["current_version"] = view["version"]
    view["position"] = None
    return view


def _tree_page(ctx: Ctx, tree_id: UUID, version: int | None) -> dict[str, Any]:
    """In the threadpool: the tree as of a version and its whole history."""
    service = ctx.site.service
    log = service.events_reader()
    if version is None:
        view = _tree_now(service, tree_id)
    else:
        view = tree_as_of(service.app, log, tree_id, version=version)
    events = history(log, service.app.mapper, tree_id)
    if view["position"] is None:  # the current version's position, from its history
        view["position"] = next(
            (e["position"] for e in events if e["version"] == view["version"]), None
        )
    ids = {m["user_id"] for m in view["messages"] if m["user_id"]}
    authors = ids | {e["user_id"] for e in events if e["user_id"]}
    names = users.display_names(service.reader(), sorted(authors))
    for e in events:
        e["user"] = names.get(e["user_id"]) if e["user_id"] else None
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    for m in view["messages"]:
        m["author"] = names.get(m["user_id"] or "", "")
        by_parent.setdefault(m["parent_id"], []).append(m)
    ordered: list[dict[str, Any]] = []

    def walk(parent: str | None) -> None:
        for m in sorted(by_parent.get(parent, []), key=lambda m: m["created_at"]):
            ordered.append(m)
            walk(m["id"])

    walk(None)
    return {"view": view, "messages": ordered, "events": events}


async def tree(ctx: Ctx) -> Response:
    tree_id = _tree_id(ctx)
    raw = ctx.request.query_params.get("version", "")
    version = int(raw) if raw.isdigit() else None
    data = await ctx.site.blocking(_tree_page, ctx, tree_id, version)
    return ctx.render("mod_tree.html", tree_id=tree_id, **data)


async def tree_act(ctx: Ctx) -> Response:
    tree_id, act = _tree_id(ctx), ctx.request.path_params["act"]
    app = ctx.site.service.app
    if act == "halt":
        position = await ctx.site.blocking(
            app.halt_tree,
            tree_id=tree_id,
            actor=ctx.actor,
            reason=ctx.field("reason") or "moderator",
        )
    elif act == "resume":
        position = await ctx.site.blocking(app.resume_tree, tree_id=tree_id, actor=ctx.actor)
    else:
        return ctx.site.error_page(ctx, 404, f"no action {act!r}")
    await ctx.site.catch_up(position)
    return redirect(f"/mod/trees/{tree_id}", f"Tree {act} recorded.")


async def message_act(ctx: Ctx) -> Response:
    act = ctx.request.path_params["act"]
    raw = ctx.request.path_params["message_id"]
    try:
        message_id = UUID(raw)
    except ValueError:
        raise MessageNotFoundError(f"message {raw} not found") from None
    service, app = ctx.site.service, ctx.site.service.app
    tree_id = await ctx.site.blocking(service.tree_of, message_id)
    args = {"tree_id": tree_id, "message_id": message_id, "actor": ctx.actor}
    if act == "delete":
        position = await ctx.site.blocking(app.delete_message, **args)
    elif act == "undelete":
        position = await ctx.site.blocking(app.undelete_message, **args)
    elif act == "edit":
        position = await ctx.site.blocking(app.edit_message, text=ctx.field("text"), **args)
    else:
        return ctx.site.error_page(ctx, 404, f"no action {act!r}")
    await ctx.site.catch_up(position)
    return redirect(f"/mod/trees/{tree_id}", f"Message {act} recorded.")


async def trolls(ctx: Ctx) -> Response:
    frame = leaderboard.check_time_frame(ctx.request.query_params.get("time_frame", "week"))
    data = await ctx.site.read(
        leaderboard.trollboard, frame, ctx.site.service.app.now(), max_count=100
    )
    return ctx.render("mod_trolls.html", board=data, frame=frame)


async def reports(ctx: Ctx) -> Response:
    return ctx.render("mod_reports.html", rows=await ctx.site.read(mq.reports))


def routes(site: Site) -> list[Route]:
    p = site.page
    return [
        Route("/mod/trees", p(trees, "moderator"), methods=["GET"]),
        Route("/mod/trees/{tree_id}", p(tree, "moderator"), methods=["GET"]),
        Route("/mod/trees/{tree_id}/{act}", p(tree_act, "moderator"), methods=["POST"]),
        Route("/mod/messages/{message_id}/{act}", p(message_act, "moderator"), methods=["POST"]),
        Route("/mod/trolls", p(trolls, "moderator"), methods=["GET"]),
        Route("/mod/reports", p(reports, "moderator"), methods=["GET"]),
    ]
