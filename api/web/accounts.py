"""Sign-up, sign-in, sign-out and the terms of service (OA's ``tos_acceptance``)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from api.web import security
from api.web.site import Ctx, Site, redirect
from domain.model.account import AccountError, check_password, check_username
from domain.service import accounts


def _next(ctx: Ctx) -> str:
    target = ctx.field("next") or ctx.request.query_params.get("next") or "/"
    # only our own paths: never an open redirect to another site
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def signup_form(ctx: Ctx) -> Response:
    if not ctx.site.signup:
        return ctx.site.error_page(ctx, 403, "Sign-up is turned off on this server.")
    return ctx.render("signup.html", username="")


async def signup(ctx: Ctx) -> Response:
    site = ctx.site
    if not site.signup:
        return site.error_page(ctx, 403, "Sign-up is turned off on this server.")
    username, password = ctx.field("username").strip(), ctx.field("password")
    try:
        check_username(username)
        check_password(password, username)
        if password != ctx.field("password2"):
            raise AccountError("the two passwords differ")
        assert site.client_id is not None
        account = await site.blocking(
            accounts.register_account,
            site.service.app,
            client_id=site.client_id,
            username=username,
            password_hash=security.hash_password(password),
            display_name=ctx.field("display_name").strip() or None,
        )
    except AccountError as e:
        return ctx.render("signup.html", e.http_status, username=username, error=e.message)
    ctx.sign_in(account)
    return redirect("/terms")


async def signin_form(ctx: Ctx) -> Response:
    return ctx.render("signin.html", username="", next=_next(ctx))


async def signin(ctx: Ctx) -> Response:
    site = ctx.site
    username, password = ctx.field("username").strip(), ctx.field("password")
    keys = (
        f"user:{username.lower()}",
        f"addr:{ctx.request.client.host if ctx.request.client else ''}",
    )
    wait = site.throttle.retry_after(*keys)
    if wait:
        return ctx.render(
            "signin.html",
            429,
            username=username,
            next=_next(ctx),
            error=f"Too many failed sign-ins. Try again in {wait} seconds.",
        )
    account = await site.blocking(accounts.find_account, site.service.app, username)
    ok = await site.blocking(
        security.verify_password, account.password_hash if account else None, password
    )
    if not ok or account is None:
        site.throttle.failed(*keys)
        return ctx.render(
            "signin.html",
            401,
            username=username,
            next=_next(ctx),
            error="Wrong username or password.",
        )
    site.throttle.succeeded(keys[0])
    ctx.sign_in(account)
    return redirect(_next(ctx))


async def signout(ctx: Ctx) -> Response:
    ctx.sign_in(None)
    ctx.account = None
    return redirect("/signin", "Signed out.")


async def terms_form(ctx: Ctx) -> Response:
    user = await ctx.site.blocking(ctx.site.service.find_user, ctx.user_id)
    return ctx.render("terms.html", accepted=user.tos_accepted_at if user else None)


async def accept_terms(ctx: Ctx) -> Response:
    if ctx.field("accept") != "yes":
        return ctx.render("terms.html", 400, accepted=None, error="Tick the box to accept.")
    app = ctx.site.service.app
    await ctx.site.blocking(app.update_user, ctx.user_id, tos_accepted_at=app.now())
    return redirect("/", "Welcome! Pick a task to start.")


def routes(site: Site) -> list[Route]:
    p = site.page
    return [
        Route("/signup", p(signup_form, "anyone"), methods=["GET"]),
        Route("/signup", p(signup, "anyone"), methods=["POST"]),
        Route("/signin", p(signin_form, "anyone"), methods=["GET"]),
        Route("/signin", p(signin, "anyone"), methods=["POST"]),
        Route("/signout", p(signout, "anyone"), methods=["POST"]),
        Route("/terms", p(terms_form), methods=["GET"]),
        Route("/terms", p(accept_terms), methods=["POST"]),
    ]
