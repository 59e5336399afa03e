"""The annotator's work: the task chooser, the hand-out, one page per task type, answers.

A task is handed out by the same hand-out as ``POST /api/v1/tasks/`` (rate limits, the
prompt lottery, reservations) and acknowledged at once with a front-end id of our own;
its page is drawn from the task as issued (the User aggregate), and the answer is the
same DataEngine command the task protocol's ``interaction`` runs. After an answer the
next task of the same kind is handed out straight away ("next task" flow).
"""

from __future__ import annotations

import random
from typing import Any
from uuid import UUID

from starlette.responses import Response
from starlette.routing import Route

from api.web import images as web_images
from api.web import labels_form
from api.web.site import Ctx, Site, redirect
from domain.model.errors import DomainError, InvalidRankingError, TaskTypeMismatchError
from domain.model.task_types import (
    LABEL_TASKS,
    NEVER_GENERATED,
    PROMPT_TASKS,
    RANKING_TASKS,
    REPLY_TASKS,
    TaskType,
)
from domain.model.user import Task
from projections import availability as av

CHOOSABLE = [t.value for t in TaskType if t not in NEVER_GENERATED]
LANGS = ["en", "de", "es", "fr", "it", "pt-BR", "ru", "zh", "ja"]


def shown_order(user_id: UUID, task: Task) -> list[str]:
    """The candidates in this annotator's own random order: seeded by user and task, so a
    reload shows the same order and different people see different orders."""
    ids = [m["message_id"] for m in task.payload.get("reply_messages", [])]
    random.Random(f"{user_id}/{task.id}").shuffle(ids)
    return ids


# ---------------------------------------------------------------- the chooser
async def home(ctx: Ctx) -> Response:
    if ctx.account is None:
        return ctx.render("welcome.html")
    site, service = ctx.site, ctx.site.service
    user = await site.blocking(service.find_user, ctx.user_id)
    if user is None or user.tos_accepted_at is None:
        return redirect("/terms")
    lang = ctx.request.query_params.get("lang", "en")
    counts = await site.read(
        av.availability, service.app.config, lang, ctx.user_id, service.app.now()
    )
    available = {t.value: n for t, n in counts.items() if t.value in CHOOSABLE}
    return ctx.render("home.html", lang=lang, langs=LANGS, available=available)


def _hand_out(ctx: Ctx, task_type: str, lang: str) -> tuple[UUID, int | None]:
    """In the threadpool: the HTTP API's hand-out, then an acknowledgement; the task
    and the log position to wait for (on the loop) before its page is read."""
    site, service = ctx.site, ctx.site.service
    assert ctx.account is not None
    service.task_limits.check(site.client_id, ("local", ctx.account.username), task_type)
    service.run_lottery()
    assert service.handout is not None
    handed = service.handout.request(ctx.user_id, TaskType(task_type), lang)
    service.app.ack_task(
        user_id=ctx.user_id, task_id=handed.id, frontend_message_id=f"web:{handed.id}"
    )
    return handed.id, service.position_of(ctx.user_id)


async def hand_out(ctx: Ctx, task_type: str, lang: str) -> UUID:
    task_id, position = await ctx.site.blocking(_hand_out, ctx, task_type, lang)
    await ctx.site.catch_up(position)
    return task_id


async def next_task(ctx: Ctx) -> Response:
    task_type = ctx.field("type", "random")
    if task_type not in CHOOSABLE:
        return ctx.site.error_page(ctx, 400, f"unknown task type {task_type!r}")
    lang = ctx.field("lang", "en") or "en"
    task_id = await hand_out(ctx, task_type, lang)
    return redirect(f"/tasks/{task_id}?want={task_type}&lang={lang}")


# ---------------------------------------------------------------- one task
async def _task(ctx: Ctx) -> Task:
    raw = ctx.request.path_params["task_id"]
    try:
        task_id = UUID(raw)
    except ValueError:
        from domain.model.errors import TaskNotFoundError

        raise TaskNotFoundError(f"task {raw} not found") from None
    return await ctx.site.blocking(ctx.site.service.app.task_of, ctx.user_id, task_id)


def _view(ctx: Ctx, task: Task) -> dict[str, Any]:
    p = task.payload
    view: dict[str, Any] = {
        "task": task,
        "kind": TaskType(task.type),
        "conversation": p.get("conversation", {}).get("messages", []),
        "want": ctx.request.query_params.get("want") or ctx.field("want") or "random",
        "lang": ctx.request.query_params.get("lang") or ctx.field("lang") or task.lang,
        "max_images": ctx.site.service.app.config.max_images_per_message,
    }
    if task.type in RANKING_TASKS:
        by_id = {m["message_id"]: m for m in p.get("reply_messages", [])}
        view["candidates"] = [by_id[i] for i in shown_order(ctx.user_id, task)]
    if task.type in LABEL_TASKS:
        view["target"] = p.get("prompt") if "prompt" in p else p.get("reply")
        view["labels"] = p.get("labels", [])
        view["mandatory"] = set(p.get("mandatory_labels", []))
        view["mode"] = p.get("mode")
    return view


async def show_task(ctx: Ctx) -> Response:
    task = await _task(ctx)
    if not task.open:
        return redirect("/", "That task is finished.")
    images = await web_images.for_task(ctx, task.tree_id)
    return ctx.render("task.html", images=images, **_view(ctx, task))


def _answer(ctx: Ctx, task: Task) -> int | None:
    """In the threadpool: the command the task protocol's interaction would run."""
    app, kind = ctx.site.service.app, TaskType(task.type)
    text, lang = ctx.field("text"), ctx.field("lang") or task.lang or "en"
    frontend_id = f"web:{task.id}:answer"
    if kind in PROMPT_TASKS:
        return app.create_prompt(
            actor=ctx.actor,
            text=text,
            lang=lang,
            task_id=task.id,
            frontend_message_id=frontend_id,
            images=web_images.from_form(ctx),
        ).position
    if kind in REPLY_TASKS:
        assert task.tree_id is not None and task.message_id is not None
        return app.add_reply(
            actor=ctx.actor,
            tree_id=task.tree_id,
            parent_id=task.message_id,
            text=text,
            lang=lang,
            task_id=task.id,
            frontend_message_id=frontend_id,
            images=web_images.from_form(ctx),
        ).position
    if kind in LABEL_TASKS:
        assert task.message_id is not None and task.tree_id is not None
        return app.submit_labels(
            actor=ctx.actor,
            tree_id=task.tree_id,
            message_id=task.message_id,
            labels=labels_form.parse(ctx, task.payload.get("labels", [])),
            kind="task",
            task_id=task.id,
        ).position
    if kind in RANKING_TASKS:
        return _rank(ctx, task)
    raise TaskTypeMismatchError(f"task type {task.type} cannot be answered here")


def _rank(ctx: Ctx, task: Task) -> int | None:
    shown = shown_order(ctx.user_id, task)
    not_rankable = ctx.field("not_rankable") == "yes"
    posted_shown = [i for i in ctx.field("display_order").split(",") if i]
    if posted_shown and posted_shown != shown:
        raise InvalidRankingError("the page's order of candidates does not match this task")
    ranking = [i for i in ctx.field("ranking").split(",") if i]
    if not ranking:  # without JavaScript: one rank per candidate from the selects
        ranks = {i: ctx.field(f"rank_{n}") for n, i in enumerate(shown)}
        ranking = sorted(shown, key=lambda i: (ranks[i], shown.index(i)))
        if sorted(ranks.values()) != [str(n + 1) for n in range(len(shown))] and not not_rankable:
            raise InvalidRankingError("give every candidate a different rank, 1 to the best")
    if not not_rankable and sorted(ranking) != sorted(shown):
        raise InvalidRankingError(f"rank all {len(shown)} candidates")
    assert task.tree_id is not None and task.message_id is not None
    return ctx.site.service.app.submit_ranking(
        actor=ctx.actor,
        tree_id=task.tree_id,
        parent_id=task.message_id,
        ranked_message_ids=[UUID(i) for i in (shown if not_rankable else ranking)],
        not_rankable=not_rankable,
        task_id=task.id,
        display_order=[UUID(i) for i in shown],
    ).position


async def _then_next(ctx: Ctx, done: str) -> Response:
    """Hand out the next task of the kind asked for; home when there is none."""
    want, lang = ctx.field("want", "random"), ctx.field("lang", "en") or "en"
    if want not in CHOOSABLE:
        want = "random"
    try:
        task_id = await hand_out(ctx, want, lang)
    except DomainError as e:  # no task left, a limit: the answer itself is recorded
        return redirect(f"/?lang={lang}", f"{done} {e.message}")
    return redirect(f"/tasks/{task_id}?want={want}&lang={lang}", done)


async def answer(ctx: Ctx) -> Response:
    task = await _task(ctx)
    try:
        position = await ctx.site.blocking(_answer, ctx, task)
    except DomainError as e:
        images = await web_images.for_task(ctx, task.tree_id)
        view = _view(ctx, task)
        return ctx.render("task.html", e.http_status, error=e.message, images=images, **view)
    await ctx.site.catch_up(position)
    return await _then_next(ctx, "Thanks, recorded.")


async def skip(ctx: Ctx) -> Response:
    task = await _task(ctx)
    reason = ctx.field("reason")[:200] or None
    service = ctx.site.service
    await ctx.site.blocking(
        service.app.nack_task, user_id=ctx.user_id, task_id=task.id, reason=reason
    )
    ids = [ctx.user_id, *([task.tree_id] if task.tree_id else [])]
    await ctx.site.catch_up(await ctx.site.blocking(service.position_of, *ids))
    return await _then_next(ctx, "Skipped.")


def routes(site: Site) -> list[Route]:
    p = site.page
    return [
        Route("/", p(home, "anyone"), methods=["GET"]),
        Route("/tasks/next", p(next_task), methods=["POST"]),
        Route("/tasks/{task_id}", p(show_task), methods=["GET"]),
        Route("/tasks/{task_id}", p(answer), methods=["POST"]),
        Route("/tasks/{task_id}/skip", p(skip), methods=["POST"]),
    ]
