"""The starlette application: OA's v1 protocol over the DataEngine.

The lifespan opens the application on the SQLite store, starts the projection runner's
live thread on ``<data>/readmodel.sqlite`` and opens the aiosqlite read pools; all stop
with the server.
Endpoints are declared in their modules (tasks, users, messages, labels, ...) through
``routing.Api``, which also feeds ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from api.http import (
    access_log,
    images,
    labels,
    leaderboards,
    message_lists,
    message_moderation,
    messages,
    oa_admin,
    oa_extras,
    oa_stats,
    openapi,
    stats,
    tasks,
    toxicity,
    tree_history,
    users,
)
from api.http import metrics as metrics_endpoint
from api.http import schemas as s
from api.http.audit import digest_endpoint
from api.http.errors import error_response, internal_error, json_response
from api.http.metrics import Metrics
from api.http.ratelimit import RateLimits
from api.http.routing import Api, Call, literal_paths_first
from api.http.service import Service
from domain.model.config import TreeConfig
from domain.model.errors import ErrorCode

__all__ = ["create_app", "from_env", "json_response", "error_response"]


async def health(call: Call) -> Any:
    """200 while the read models follow the log and are its projection; 503 with the reason
    once the runner has stopped or the read model is not the log's (projections.identity)."""
    service = call.service
    runner = service.runner
    head = await service.head_async()
    reason = await service.blocking(service.readmodel_problem)
    position = runner.position if runner else 0
    body = s.Health(
        status="ok" if reason is None else "read models not ready",
        log_position=head,
        readmodel_position=position,
        lag=max(0, head - position),
        reason=reason,
    )
    return json_response(body, 503 if reason is not None else 200)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = ErrorCode.VALIDATION_ERROR if exc.status_code == 422 else ErrorCode.GENERIC_ERROR
    body = {"message": str(exc.detail), "error_code": int(code)}
    return json_response(body, exc.status_code, dict(exc.headers or {}))  # a 405 keeps Allow


async def _unhandled(request: Request, exc: Exception) -> Response:
    return internal_error(exc)


def create_app(
    folder: Path | str,
    config: TreeConfig | None = None,
    *,
    root_tokens: frozenset[str] | None = None,
    web_api_key: str | None = None,
    catch_up_timeout: float = 2.0,
    seed: int | None = None,
    rate_limits: RateLimits | None = None,
    process_interval: float | None = None,
) -> Starlette:
    """The app on the store in ``folder``; config from the folder/environment unless given.

    Root tokens default to $DATAENGINE_ROOT_TOKENS (comma-separated); a trusted official
    client is registered from $DATAENGINE_WEB_API_KEY when set. Rate limits default to
    OA's, configured by $DATAENGINE_RATE_LIMIT* (api.http.ratelimit).
    """
    folder = Path(folder)
    access_log.install()  # keys never reach the access log, even in a refused URL
    service = Service(
        folder,
        config,
        root_tokens=root_tokens,
        web_api_key=web_api_key,
        catch_up_timeout=catch_up_timeout,
        seed=seed,
        rate_limits=rate_limits,
        process_interval=process_interval,
    )
    metrics = Metrics(service)
    return _starlette(service, build_api(service, metrics), folder, metrics)


def _audit(api: Api, service: Service) -> None:
    digest = digest_endpoint(service.folder, service.log)

    async def audit_digest(call: Call) -> Any:
        return await digest(call.request)

    api.add(
        "GET",
        "/api/v1/audit/digest",
        audit_digest,
        response=s.AuditDigest,
        query={"position": "a log position (default: the head); the digest up to it"},
        summary="the audit chain's digest at a log position (projections.audit)",
        tag="audit",
        errors={"409": "the log changed under the audit record: not blessed"},
    )


def build_api(service: Service, metrics: Metrics | None = None) -> Api:
    """Every endpoint, in the order their routes must be matched."""
    api = Api(service)
    api.add(
        "GET",
        "/health",
        health,
        access="public",
        response=s.Health,
        summary="liveness and log/read-model positions",
        tag="meta",
    )
    tasks.register(api)
    users.register(api)
    labels.register(api)
    message_lists.register(api)  # before messages: /messages/cursor is not a message id
    messages.register(api)
    images.register(api)
    message_moderation.register(api)
    tree_history.register(api)
    stats.register(api)
    leaderboards.register(api)
    # OA's admin, statistics and remaining operations (issue 16)
    oa_admin.register(api)
    oa_stats.register(api)
    oa_extras.register(api)
    toxicity.register(api)
    _audit(api, service)
    metrics_endpoint.register(api, metrics or Metrics(service))
    openapi.register(api)
    return api


def _starlette(
    service: Service, api: Api, folder: Path, metrics: Metrics | None = None
) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    routes = literal_paths_first(metrics.instrument(api.routes()) if metrics else api.routes())
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unhandled},
    )
    app.state.service = service
    app.state.api = api
    return app


def from_env() -> Starlette:
    """A factory for ``uvicorn --factory api.http.app:from_env``: the store in $DATAENGINE_DATA."""
    from api.bootstrap import data_dir

    return create_app(data_dir())
