"""The web app's routes on a Site (api.web.site), with its static files."""

from __future__ import annotations

import os

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from api.http.service import Service
from api.web import accounts, admin, dashboard, images, moderation, people, render, tasks
from api.web.site import HERE, SIGNUP_ENV, Site


def signup_from_env() -> bool:
    return os.environ.get(SIGNUP_ENV, "true").strip().lower() not in ("0", "false", "no", "off")


def web_routes(site: Site) -> list[BaseRoute]:
    return [
        *accounts.routes(site),
        *admin.routes(site),
        *tasks.routes(site),
        *images.routes(site),
        *people.routes(site),
        *moderation.routes(site),
        *dashboard.routes(site),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]


def drop_caches() -> None:
    """Forget what the pages cache (rendered markdown, the training status), so that a
    benchmark can time a page as its first view."""
    render.markdown_cache_clear()
    dashboard.drop_cached()


def create_site(service: Service, *, signup: bool | None = None) -> Site:
    return Site(service, signup=signup_from_env() if signup is None else signup)
