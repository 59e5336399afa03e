"""The starlette application. Sync application calls run in the threadpool."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import msgspec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.http.audit import digest_endpoint
from api.storage import load_config, open_app
from domain.errors import DomainError


def json_response(data: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


def error_response(error: DomainError) -> Response:
    return json_response({"message": error.message, "error_code": int(error.error_code)},
                         error.http_status)


def create_app(folder: Path) -> Starlette:
    engine = open_app(folder, load_config(folder))

    async def health(request: Request) -> Response:
        position = await run_in_threadpool(engine.recorder.max_notification_id)
        return json_response({"status": "ok", "log_position": position or 0})

    async def tree(request: Request) -> Response:
        try:
            tree_id = UUID(request.path_params["tree_id"])
        except ValueError:
            return json_response({"message": "not a tree id", "error_code": 2006}, 404)
        try:
            found = await run_in_threadpool(engine.get_tree, tree_id)
        except DomainError as e:
            return error_response(e)
        return json_response(found.as_dict())

    app = Starlette(routes=[
        Route("/health", health),
        Route("/api/v1/trees/{tree_id}", tree),
        Route("/api/v1/audit/digest", digest_endpoint(folder)),
    ])
    app.state.engine = engine
    return app
