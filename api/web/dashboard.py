"""The trainers' and operators' dashboard: pictures and tables of the read models.

Trees per state and language, task availability, votes per hour over the last two
days, annotator agreement, the model leaderboard, the training projection's status and
the registered models with their metrics (a loss curve when the run logged one) and the
training curves picture their run wrote.

A curves picture is served only as ``curves.png`` inside the folder a registered model
names, and only when it is a PNG file there (not a link out of the folder): the request
chooses a model name, never a path."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any
from weakref import WeakSet

from starlette.responses import Response
from starlette.routing import Route

from api.web import render
from api.web.site import Ctx, Site
from domain.model.errors import ModelNotFoundError
from projections import agreement, arena
from projections import availability as av
from projections.datasets.live import NAME as TRAINING
from projections.datasets.precut import status as training_status
from projections.queries import datasets, models, votes
from projections.queries import trees as tree_counts

HOURS = 48
CURVES = "curves.png"  # what training.runs writes into a run folder
PNG = b"\x89PNG\r\n\x1a\n"
MAX_PICTURE = 5_000_000


def _trees(conn: sqlite3.Connection) -> dict[str, Any]:
    rows = tree_counts.count_by_state_and_lang(conn)
    states: dict[str, int] = {}
    langs: dict[str, dict[str, int]] = {}
    for state, lang, n in rows:
        states[state] = states.get(state, 0) + n
        langs.setdefault(lang, {})[state] = n
    return {"states": states, "langs": langs}


def _votes_per_hour(conn: sqlite3.Connection, now: float) -> list[tuple[str, float]]:
    """Labels and rankings per hour (the votes), the last HOURS hours, oldest first."""
    since = now - HOURS * 3600
    counts = votes.per_hour(conn, since)
    first = int(since // 3600) + 1
    return [
        (time.strftime("%m-%d %H:00", time.gmtime(h * 3600)), float(counts.get(h, 0)))
        for h in range(first, first + HOURS)
    ]


def _models(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    out = []
    for name, kind, base, position, metrics, registered, path in models.latest(conn, 50):
        m = json.loads(metrics or "{}")
        curve = m.get("loss_history") or m.get("losses") or []
        scalars = {
            k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        out.append(
            {
                "name": name,
                "kind": kind,
                "base_model": base,
                "position": position,
                "registered_at": registered,
                "metrics": scalars,
                "curve": render.line_chart(
                    [float(x) for x in curve if isinstance(x, (int, float))]
                ),
                "picture": curves_file(path) is not None,
            }
        )
    return out


def _all(conn: sqlite3.Connection, config: Any, now: Any, user_id: Any) -> dict[str, Any]:
    counts = av.availability(conn, config, "en", user_id, now)
    return {
        "trees": _trees(conn),
        "available": {t.value: n for t, n in counts.items() if n},
        "votes": _votes_per_hour(conn, now.timestamp()),
        "agreement": agreement.agreement(conn),
        "model_board": arena.model_leaderboard(conn),  # + Bradley-Terry strengths
        "models": _models(conn),
    }


def _dataset_key(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
    return datasets.change_key(conn, TRAINING)


_statuses: WeakSet[TrainingStatus] = WeakSet()


def drop_cached() -> None:
    """Forget every cached training status (a benchmark's first-view figures)."""
    for status in list(_statuses):
        status.cached = None


class TrainingStatus:
    """The training projection's status (precut.status) with its rows per kind reused
    while the dataset trees are unchanged.

    status() counts the rows of every ready tree (a scan of dataset_rows, whose rows hold
    the cut lines: ~25 ms at 1,000 trees, growing with the store). Those counts change only
    when a dataset tree is added, changed or removed, which moves the dataset trees' count
    or newest ready/changed position; the projection's position, the log's and the lag are
    read for every page."""

    def __init__(self) -> None:
        self.cached: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        _statuses.add(self)

    async def __call__(self, site: Site) -> dict[str, Any]:
        key = await site.read(_dataset_key)  # before the head: the lag is never negative
        head = await site.service.head_async()
        cached = self.cached
        if key is not None and cached is not None and cached[0][1:] == key[1:]:
            at = key[0]
            return {**cached[1], "log_position": head, "projection_position": at, "lag": head - at}
        service = site.service  # its log: the one the server started on
        report = await site.blocking(training_status, service.folder, log=service.log)
        if report["projection_position"] is not None:
            at = report["projection_position"]
            dataset = (report["ready_trees"], report["newest_ready_position"])
            self.cached = ((at, *dataset, report["last_change_position"]), report)
        return report


async def dashboard(ctx: Ctx, training_status: TrainingStatus) -> Response:
    site = ctx.site
    app = site.service.app
    data, training = await asyncio.gather(
        site.read(_all, app.config, app.now(), ctx.user_id), training_status(site)
    )
    trees = data["trees"]
    return ctx.render(
        "dashboard.html",
        trees_chart=render.bar_chart(sorted(trees["states"].items(), key=lambda x: -x[1])),
        votes_chart=render.column_chart(data["votes"]),
        votes_total=int(sum(v for _, v in data["votes"])),
        available_chart=render.bar_chart(sorted(data["available"].items(), key=lambda x: -x[1])),
        training=training,
        **data,
    )


def curves_file(folder: str) -> Path | None:
    """``folder``/curves.png when it is a PNG file inside that folder, else None."""
    base = Path(folder)
    if not base.is_absolute() or not base.is_dir():
        return None  # a hub name, or a folder that is gone
    picture = (base / CURVES).resolve()
    if picture.parent != base.resolve() or not picture.is_file():
        return None
    if picture.stat().st_size > MAX_PICTURE:
        return None
    with picture.open("rb") as f:
        return picture if f.read(len(PNG)) == PNG else None


async def curves(ctx: Ctx) -> Response:
    name = ctx.request.query_params.get("model", "")
    path = await ctx.site.read(models.path_of, name)
    picture = await ctx.site.blocking(curves_file, path) if path is not None else None
    if picture is None:
        raise ModelNotFoundError(f"no training curves for model {name!r}")
    body = await ctx.site.blocking(picture.read_bytes)
    return Response(body, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


def routes(site: Site) -> list[Route]:
    training = TrainingStatus()

    async def page(ctx: Ctx) -> Response:
        return await dashboard(ctx, training)

    return [
        Route("/dashboard", site.page(page, "moderator"), methods=["GET"]),
        Route("/dashboard/curves", site.page(curves, "moderator"), methods=["GET"]),
    ]
