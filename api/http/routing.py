"""Declaring endpoints once: the route, its access level, its body and answer schemas.

A handler is a function of a ``Call``, of one of two kinds:

- a plain function: a command (or a read that is part of one). The wrapper reads the
  body (size-capped) on the event loop, then runs authentication and the handler
  together in the service's threadpool (one hop per request);
- a coroutine function: a read. It runs on the event loop and queries the read model
  (``call.read(query, ...)``, a projections/ query) or the event store (``call.log_rows``,
  handed to projections.queries.log) through aiosqlite; a command it
  needs goes to the threadpool with ``await call.blocking(...)``. Its authentication is
  answered from the aggregate cache when the client is there (no hop at all).

Either way every failure becomes the JSON error shape, and the same declarations feed
the OpenAPI document.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from api.http import auth
from api.http.errors import (
    MAX_BODY_BYTES,
    HttpError,
    decode,
    error_response,
    internal_error,
    json_response,
    no_content,
    read_body,
    refuse_nul,
    require_json,
    validation,
)
from api.http.log_position import RECORDED
from api.http.params import check_query
from api.http.schemas import User
from api.http.service import Service
from domain.model.actor import Actor
from domain.model.api_client import ApiClient
from domain.model.errors import DomainError, ErrorCode

Handler = Callable[["Call"], Any]
R = TypeVar("R")


@dataclass
class Call:
    request: Request
    service: Service
    client: ApiClient | None
    body: bytes
    wait: int | None = None  # a log position the answer waits for (off the threadpool)
    deferring: bool = False  # a command handler: first-seen users ride with its command

    def catch_up(self, position: int | None) -> None:
        """Answer only once the read models include ``position`` (read-your-writes): the
        wait happens on the event loop after the handler, off the threadpool."""
        if position is not None:
            self.wait = max(self.wait or 0, position)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """On a command thread: users this request names are registered with its first
        command on them, or, once the block ends without an error, on their own."""
        with self.service.app.deferring_user():
            self.deferring = True
            try:
                yield
            finally:
                self.deferring = False

    # ------------------------------------------------------------ on the event loop
    async def read(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """A projection's read function ``fn(conn, ...)`` on a read-model connection (the
        queries live in projections/: no SQL in the edges, tests/test_service_boundary)."""
        return await self.service.reads.run(fn, *args, **kwargs)

    async def log_rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of the event store (aiosqlite)."""
        return await self.service.log_reads.rows(sql, params)

    async def blocking(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """A command (the synchronous application) in the threadpool."""
        return await self.service.blocking(fn, *args, **kwargs)

    # ------------------------------------------------------------ request details
    def json(self, schema: Any, *, strict: bool = True) -> Any:
        return decode(self.body, schema, strict=strict)

    def path_id(self, name: str, code: ErrorCode, what: str) -> UUID:
        raw = self.request.path_params[name]
        try:
            return UUID(raw)
        except ValueError:
            raise HttpError(f"{what} {raw!r} not found", code, 404) from None

    def query(self, name: str, default: str | None = None) -> str | None:
        return self.request.query_params.get(name, default)

    def flag(self, name: str, default: bool) -> bool:
        found = self.optional_flag(name)
        return default if found is None else found

    def optional_flag(self, name: str) -> bool | None:
        raw = self.request.query_params.get(name)
        if raw is None:
            return None
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise validation(f"query parameter {name} must be true or false, not {raw!r}")

    def count(self, name: str, default: int, most: int) -> int:
        """A positive integer parameter, at most ``most`` (OA's ``max_count``)."""
        raw = self.request.query_params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if not 0 < value <= most:
            raise validation(f"query parameter {name} must be an integer in 1..{most}, not {raw!r}")
        return value

    def uuid_query(self, name: str) -> UUID | None:
        raw = self.request.query_params.get(name)
        if raw is None:
            return None
        try:
            return UUID(raw)
        except ValueError:
            raise validation(f"query parameter {name} must be a UUID, not {raw!r}") from None

    def time_query(self, name: str) -> datetime | None:
        """An ISO 8601 time; one without a zone is UTC (as OA reads it)."""
        raw = self.request.query_params.get(name)
        if not raw:
            return None
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise validation(
                f"query parameter {name} must be an ISO 8601 time, not {raw!r}"
            ) from None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

    @property
    def api_client(self) -> ApiClient:
        assert self.client is not None
        return self.client

    def user(self, user: User, **profile: Any) -> Actor:
        """The body's user as an actor; created on first sight, display name kept current."""
        return Actor(self.user_id(user, **profile), self.api_client.id)

    def user_id(self, user: User, **profile: Any) -> UUID:
        """The body's user, created on first sight, display name kept current."""
        return self.named_user(user.auth_method, user.id, user.display_name, **profile)

    def named_user(
        self, auth_method: str, username: str, display_name: str | None, **profile: Any
    ) -> UUID:
        """A user of the calling client, created on first sight. In a command handler the
        registration rides with the request's command, so a refused request records
        nothing (DataEngine.deferring_user)."""
        if self.deferring:
            found = self.service.app.defer_user(
                client_id=self.api_client.id,
                auth_method=auth_method,
                username=username,
                display_name=display_name,
                **profile,
            )
            if found is not None:
                return found
        return self.service.ensure_user(
            self.api_client, auth_method, username, display_name, **profile
        )

    def header_actor(self, required: bool = True) -> Actor | None:
        found = (
            auth.require_header_user(self.request) if required else auth.header_user(self.request)
        )
        if found is None:
            return None
        client = self.api_client
        return Actor(self.service.user_id(client, *found), client.id)


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    access: auth.Access = "client"
    body: Any = None
    response: Any = None
    status: int = 200
    summary: str = ""
    query: dict[str, str] = field(default_factory=dict)
    tag: str = ""
    errors: dict[str, str] = field(default_factory=dict)  # statuses beyond the common ones
    max_body: int = MAX_BODY_BYTES  # larger for uploads (api.http.images)


class Api:
    def __init__(self, service: Service):
        self.service = service
        self.endpoints: list[Endpoint] = []

    def add(self, method: str, path: str, handler: Handler, **options: Any) -> None:
        self.endpoints.append(Endpoint(method, path, handler, **options))

    def routes(self) -> list[Route]:
        """One route per path, answering each of its methods: a method the path does not
        take is answered 405 with ``Allow`` naming all those it takes (one route per
        endpoint would name only the first route's method)."""
        by_path: dict[str, dict[str, Callable[[Request], Any]]] = {}
        for e in self.endpoints:
            by_path.setdefault(e.path, {})[e.method] = self._wrap(e)
        return [
            Route(path, _by_method(handlers), methods=list(handlers))
            for path, handlers in by_path.items()
        ]

    def _wrap(self, endpoint: Endpoint) -> Callable[[Request], Any]:
        service, handler, access = self.service, endpoint.handler, endpoint.access
        on_loop = inspect.iscoroutinefunction(handler)

        def run(call: Call) -> Any:
            if access == "root":
                auth.check_root(call.request, service.root_tokens)
            elif access != "public":
                call.client = service.authenticate(auth.api_key(call.request))
                auth.check_client(call.client, access)
                auth.header_user(call.request)  # when sent, valid (whether read or not)
            with call.deferred():
                return handler(call)

        async def run_on_loop(call: Call) -> Any:
            if access == "root":
                auth.check_root(call.request, service.root_tokens)
            elif access != "public":
                call.client = await service.authenticate_async(auth.api_key(call.request))
                auth.check_client(call.client, access)
                auth.header_user(call.request)  # when sent, valid (whether read or not)
            return await handler(call)

        async def asgi_endpoint(request: Request) -> Response:
            try:
                refuse_nul(request)
                check_query(endpoint.path, endpoint.query, request)
                body = (
                    await read_body(request, endpoint.max_body)
                    if request.method in ("POST", "PUT")
                    else b""
                )
                if endpoint.body is not None:
                    require_json(request, body)
                call = Call(request, service, None, body)
                if on_loop:
                    result = await run_on_loop(call)
                else:
                    result = await service.blocking(run, call)
                await service.catch_up_async(call.wait)
                if call.wait is not None:  # what it recorded, for the answer's position
                    request.scope[RECORDED] = call.wait  # (api.http.log_position)
            except DomainError as e:
                return error_response(e)
            except Exception as e:  # noqa: BLE001 - a bug: logged, answered without details
                return internal_error(e)
            if isinstance(result, Response):
                return result
            if result is None:
                return no_content()
            return json_response(result, endpoint.status)

        asgi_endpoint.__name__ = getattr(handler, "__name__", "endpoint")
        return asgi_endpoint


class _Route(Route):
    """A route with a path parameter that leaves the paths other routes spell out alone:
    ``DELETE /messages/cursor`` is 405 (``/messages/cursor`` takes GET), not a lookup of a
    message called "cursor" that ``/messages/{message_id}`` would answer 404."""

    def __init__(self, path: str, endpoint: Any, *, methods: list[str], literals: frozenset[str]):
        super().__init__(path, endpoint, methods=methods)
        self.literals = literals

    def matches(self, scope: Any) -> tuple[Match, Any]:
        if scope.get("type") == "http" and scope.get("path") in self.literals:
            return Match.NONE, {}
        return super().matches(scope)


def literal_paths_first(routes: list[Route]) -> list[Route]:
    """``routes`` with each templated route made to skip the literal paths of the others."""
    literals = frozenset(r.path for r in routes if "{" not in r.path)
    return [
        _Route(r.path, r.endpoint, methods=sorted(r.methods or ()), literals=literals)
        if "{" in r.path
        else r
        for r in routes
    ]


def _by_method(handlers: dict[str, Callable[[Request], Any]]) -> Callable[[Request], Any]:
    if len(handlers) == 1:
        (only,) = handlers.values()
        return only
    get = handlers.get("GET")

    async def dispatch(request: Request) -> Response:
        # Starlette answered the methods the route does not take (405 + Allow); HEAD is GET's
        handler = handlers.get(request.method) or get
        assert handler is not None
        return await handler(request)

    dispatch.__name__ = "_".join(getattr(h, "__name__", "endpoint") for h in handlers.values())
    return dispatch
