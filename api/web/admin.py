"""Account pages: a person changes their password (the current one first, with the
sign-in throttle); an admin changes someone's role (the same command as ``dataengine
users set-role``)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from api.web import security
from api.web.site import Ctx, Site, redirect
from domain.model.account import AccountError, Role, check_password, check_role
from domain.service import accounts


# ---------------------------------------------------------------- own password
async def password_form(ctx: Ctx) -> Response:
    return ctx.render("password.html")


async def change_password(ctx: Ctx) -> Response:
    site, account = ctx.site, ctx.account
    assert account is not None
    key = f"user:{account.username.lower()}"
    wait = site.throttle.retry_after(key)
    if wait:
        error = f"Too many wrong passwords. Try again in {wait} seconds."
        return ctx.render("password.html", 429, error=error)
    if not await site.blocking(
        security.verify_password, account.password_hash, ctx.field("current")
    ):
        site.throttle.failed(key)  # the same count as sign-ins: no guessing through here
        return ctx.render("password.html", 401, error="The current password is wrong.")
    new = ctx.field("password")
    try:
        check_password(new, account.username)
        if new != ctx.field("password2"):
            raise AccountError("the two new passwords differ")
    except AccountError as e:
        return ctx.render("password.html", e.http_status, error=e.message)
    password_hash = await site.blocking(security.hash_password, new)
    await site.blocking(
        accounts.change_password,
        site.service.app,
        username=account.username,
        password_hash=password_hash,
    )
    changed = await site.blocking(accounts.find_account, site.service.app, account.username)
    ctx.sign_in(changed)  # a fresh session and CSRF token, marked with the new password
    return redirect("/me", "Your password is changed.")


# ---------------------------------------------------------------- roles (admins)
async def users(ctx: Ctx) -> Response:
    name = ctx.request.query_params.get("username", "").strip()
    found = None
    if name:
        found = await ctx.site.blocking(accounts.find_account, ctx.site.service.app, name)
    roles = [r.value for r in Role]
    return ctx.render("admin_users.html", username=name, found=found, roles=roles)


async def set_role(ctx: Ctx) -> Response:
    assert ctx.account is not None
    name, role = ctx.field("username").strip(), ctx.field("role")
    check_role(role)
    if name.lower() == ctx.account.username.lower():
        raise AccountError("you cannot change your own role (another admin, or the CLI, can)")
    await ctx.site.blocking(accounts.change_role, ctx.site.service.app, username=name, role=role)
    return redirect(f"/admin/users?username={name}", f"{name} is now {role}.")


def routes(site: Site) -> list[Route]:
    p = site.page
    return [
        Route("/account/password", p(password_form), methods=["GET"]),
        Route("/account/password", p(change_password), methods=["POST"]),
        Route("/admin/users", p(users, "admin"), methods=["GET"]),
        Route("/admin/users", p(set_role, "admin"), methods=["POST"]),
    ]
