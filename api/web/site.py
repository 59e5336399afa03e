"""What every page shares: the web client, templates, the session and role checks.

``Site.page(handler, need=...)`` wraps a page handler: it loads (or starts) the
session, refuses a POST without the session's CSRF token (403, nothing recorded),
checks the role the page needs (sign-in redirect, or a 403 page), runs the handler and
turns a refused command (DomainError) into a readable page with the error's status.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.http.service import Service
from api.web import render
from api.web.security import COOKIE, Sessions, SignInThrottle, csrf_ok, derived_key, load_secret
from domain.model.account import Account
from domain.model.actor import Actor
from domain.model.errors import DomainError
from domain.service import accounts

log = logging.getLogger("dataengine.web")
HERE = Path(__file__).parent
Need = Literal["anyone", "user", "moderator", "admin"]
SIGNUP_ENV = "DATAENGINE_WEB_SIGNUP"


@dataclass
class Ctx:
    """One request as a page handler sees it."""

    site: Site
    request: Request
    session: dict[str, Any]
    account: Account | None
    form: FormData | None = None
    dirty: bool = False
    flash: list[str] = field(default_factory=list)

    @property
    def user_id(self) -> UUID:
        assert self.account is not None
        return self.account.user_id

    @property
    def actor(self) -> Actor:
        return Actor(self.user_id, self.site.client_id)

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else default

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        return self.site.render(self, template, status, **values)

    def sign_in(self, account: Account | None) -> None:
        """A fresh session (and CSRF token) at every sign-in and sign-out; it keeps a mark
        of the account's password, so a password change ends the other sessions."""
        self.session = Sessions.new(account.username if account else None)
        if account is not None:
            self.session["p"] = self.site.sessions.mark(account.password_hash)
        self.dirty = True


class _Environment(Environment):
    """Jinja with a dict's key looked up first when no dict attribute has its name: the
    pages' views are plain dicts, and the default lookup tries ``getattr(dict, key)``
    before the key, so every ``m.text`` raised and caught an AttributeError (a third of a
    tree view's rendering). Same answers: ``x.items`` is still the method."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and not hasattr(dict, attribute):
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


_heap_frozen = False


def freeze_startup_heap() -> None:
    """Once per process, when the first site has started: what is alive then (modules,
    compiled templates, the service and what it loaded) leaves the cycle collector's
    generations. Each full collection scanned it again, ~35 ms on a 1,000-tree store, and
    landed on whichever page was being served (bench/web.py: a tree view's p99 ~30 ms at a
    6 ms p50). Those objects are still freed by reference counting; only a cycle among
    them would never be collected."""
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


class Site:
    def __init__(self, service: Service, *, signup: bool = True, secure: bool | None = None):
        self.service = service
        self.signup = signup
        self.secure = secure  # None: Secure cookies when the request came over TLS
        secret = load_secret(service.folder)
        self.sessions = Sessions(secret)
        self.client_key = derived_key(secret, "dataengine web client")
        self.client_id: UUID | None = None
        self.throttle = SignInThrottle()
        self.env = _Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # compiled once per process: no stat of each template per page
        )
        self.env.filters["md"] = render.markdown
        self.env.filters["ago"] = render.ago

    async def start(self) -> None:
        """Register the built-in trusted web client (its key never leaves the server)."""
        self.client_id, _ = await self.service.blocking(
            self.service.app.register_client,
            name="web app",
            api_key=self.client_key,
            trusted=True,
            frontend_type="web",
        )
        freeze_startup_heap()

    # ------------------------------------------------------------------ rendering
    def render(self, ctx: Ctx, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(
            account=ctx.account,
            csrf=ctx.session.get("c", ""),
            signup=self.signup,
            path=ctx.request.url.path,
            flash=ctx.flash + [m for m in [ctx.request.query_params.get("msg")] if m],
            **values,
        )
        return HTMLResponse(html, status_code=status)

    def error_page(self, ctx: Ctx, status: int, message: str) -> HTMLResponse:
        return self.render(ctx, "error.html", status, code=status, message=message)

    # ------------------------------------------------------------------ the wrapper
    def page(
        self, handler: Callable[[Ctx], Awaitable[Response]], need: Need = "user"
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            ctx = await self._context(request)
            response = await self._guarded(ctx, handler, need)
            if ctx.dirty:
                response.set_cookie(
                    COOKIE,
                    self.sessions.dump(ctx.session),
                    max_age=self.sessions.max_age,
                    httponly=True,
                    samesite="lax",
                    secure=self.secure
                    if self.secure is not None
                    else request.url.scheme == "https",
                )
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            return response

        return endpoint

    async def _context(self, request: Request) -> Ctx:
        session = self.sessions.load(request.cookies.get(COOKIE))
        ctx = Ctx(self, request, session or Sessions.new(), None, dirty=session is None)
        username = ctx.session.get("u")
        if username:
            account = await self.service.blocking(accounts.find_account, self.service.app, username)
            if account is None or ctx.session.get("p") != self.sessions.mark(
                account.password_hash
            ):  # the account is gone, or its password changed since: sign out
                ctx.sign_in(None)
                account = None
            ctx.account = account
        return ctx

    async def _guarded(
        self, ctx: Ctx, handler: Callable[[Ctx], Awaitable[Response]], need: Need
    ) -> Response:
        request = ctx.request
        if request.method == "POST":
            ctx.form = await request.form()
            token = request.headers.get("x-csrf-token") or ctx.field("csrf")
            if not csrf_ok(ctx.session, token):
                return self.error_page(
                    ctx,
                    403,
                    "This form has expired or was not sent by this site. Reload the "
                    "page and try again.",
                )
        if need != "anyone" and ctx.account is None:
            return RedirectResponse(f"/signin?next={request.url.path}", 303)
        if need == "moderator" and not (ctx.account and ctx.account.can_moderate):
            return self.error_page(ctx, 403, "This page is for moderators.")
        if need == "admin" and not (ctx.account and ctx.account.role == "admin"):
            return self.error_page(ctx, 403, "This page is for administrators.")
        try:
            return await handler(ctx)
        except DomainError as e:
            return self.error_page(ctx, e.http_status, e.message)

    async def read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A read-model query ``fn(conn, ...)`` on the aiosqlite pool."""
        return await self.service.reads.run(fn, *args, **kwargs)

    async def catch_up(self, position: int | None) -> None:
        """After a command: wait (bounded) until the read models include it, so the
        person's next page shows what they just did."""
        await self.service.catch_up_async(position)

    async def blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A command (or an aggregate read) in the service's threadpool."""
        return await self.service.blocking(fn, *args, **kwargs)


def redirect(url: str, msg: str | None = None) -> RedirectResponse:
    from urllib.parse import quote

    sep = "&" if "?" in url else "?"
    return RedirectResponse(f"{url}{sep}msg={quote(msg)}" if msg else url, 303)
