"""One starlette app for ``dataengine serve``: the web app at ``/`` and the HTTP API
(``/api/v1``, ``/health``, ``/openapi.json``, ``/docs``) on one Service.

The API's own app (api.http.app.create_app) is built as before and its routes are
taken over, so the API behaves exactly as when served alone; the web app's routes
come first (their paths never overlap the API's). Errors that escape a route: JSON
with OA's codes under the API's paths, a readable page elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from api.bootstrap import check_storage
from api.http.app import create_app as create_api
from api.http.errors import internal_error, json_response
from api.http.log_position import LogPositionMiddleware
from api.http.store_down import StoreDownMiddleware
from api.storage.pg_url import is_postgres
from api.web.app import create_site, web_routes
from domain.model.config import TreeConfig
from domain.model.errors import ErrorCode

_API_PREFIXES = ("/api/", "/health", "/openapi.json", "/docs")


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(_API_PREFIXES)


def _page(status: int, message: str) -> HTMLResponse:
    from html import escape

    return HTMLResponse(
        f"<!doctype html><meta charset=utf-8><title>{status}</title>"
        f'<link rel="stylesheet" href="/static/app.css"><main><h1>{status}</h1>'
        f'<p>{escape(message)}</p><p><a href="/">Home</a></p></main>',
        status_code=status,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_api(request):
        code = ErrorCode.VALIDATION_ERROR if exc.status_code == 422 else ErrorCode.GENERIC_ERROR
        body = {"message": str(exc.detail), "error_code": int(code)}
        return json_response(body, exc.status_code, dict(exc.headers or {}))  # 405: Allow
    page = _page(
        exc.status_code, "There is no such page." if exc.status_code == 404 else str(exc.detail)
    )
    page.headers.update(exc.headers or {})
    return page


async def _unhandled(request: Request, exc: Exception) -> Response:
    response = internal_error(exc)  # logs it
    return response if _is_api(request) else _page(500, "Something went wrong on our side.")


def create_server(
    folder: Path | str,
    config: TreeConfig | None = None,
    *,
    signup: bool | None = None,
    **api_options: Any,
) -> Starlette:
    """The composed app on the store in ``folder``; ``api_options`` go to the API's
    create_app (root tokens, rate limits, process interval ...)."""
    check_storage(folder)  # before uvicorn: `dataengine serve` says why and exits non-zero
    api = create_api(folder, config, **api_options)
    service = api.state.service
    site = create_site(service, signup=signup)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            await site.start()
            yield
        finally:
            await service.stop()

    app = Starlette(
        routes=[*web_routes(site), *api.router.routes],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unhandled},
        middleware=_middleware(service),  # PostgreSQL down; several processes
    )
    app.state.service = service
    app.state.api = api.state.api
    app.state.site = site
    return app


def _middleware(service: Any) -> list[Middleware]:
    found = []
    location = service.log  # the service's log, named once
    if is_postgres(location):  # 503 at once while PostgreSQL is down
        found.append(Middleware(StoreDownMiddleware, url=str(location)))
    if service.shared:  # several processes on one store: read-your-writes on any of them
        found.append(Middleware(LogPositionMiddleware, service=service))
    return found


def from_env() -> Starlette:
    """For ``uvicorn --factory api.server:from_env``: the store in $DATAENGINE_DATA."""
    from api.bootstrap import data_dir

    return create_server(data_dir())
