"""The web app without a browser (starlette's TestClient): accounts, sessions, CSRF,
throttling, roles, the admin command, and the API still served beside the pages."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from api.http.ratelimit import RateLimits
from api.server import create_server


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


@pytest.fixture
def client(tmp_path: Path) -> Any:
    app = create_server(tmp_path, process_interval=0, rate_limits=RateLimits(enabled=False))
    with TestClient(app, follow_redirects=False) as c:
        c.folder = tmp_path
        yield c


def _signup(c: TestClient, name: str, password: str = "long enough 1", **extra: str) -> Any:
    token = _csrf(c.get("/signup").text)
    data = {"csrf": token, "username": name, "password": password, "password2": password, **extra}
    return c.post("/signup", data=data)


def _head(c: TestClient) -> int:
    return c.app.state.service.head()


def test_signup_signin_signout_and_cookie_flags(client: TestClient) -> None:
    r = _signup(client, "alice")
    assert r.status_code == 303 and r.headers["location"] == "/terms"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    token = _csrf(client.get("/terms").text)
    assert client.post("/terms", data={"csrf": token, "accept": "yes"}).status_code == 303
    assert "Pick a task" in client.get("/").text
    assert client.post("/signout", data={"csrf": token}).status_code == 303
    assert client.get("/me").status_code == 303  # signed out: to the sign-in page
    token = _csrf(client.get("/signin").text)
    r = client.post(
        "/signin", data={"csrf": token, "username": "ALICE", "password": "long enough 1"}
    )
    assert r.status_code == 303
    assert client.get("/me").status_code == 200


def test_refused_signup_records_nothing(client: TestClient) -> None:
    _signup(client, "bob")
    before = _head(client)
    client.cookies.clear()
    assert _signup(client, "Bob").status_code == 409  # taken, ignoring case
    assert _signup(client, "carol", "short").status_code == 400
    assert _signup(client, "x!").status_code == 400
    token = _csrf(client.get("/signup").text)
    r = client.post(
        "/signup",
        data={
            "csrf": token,
            "username": "dave",
            "password": "long enough 1",
            "password2": "other one 22",
        },
    )
    assert r.status_code == 400 and "differ" in r.text
    assert _head(client) == before


def test_post_without_csrf_is_refused(client: TestClient) -> None:
    client.get("/signup")
    before = _head(client)
    r = client.post(
        "/signup",
        data={"username": "eve", "password": "long enough 1", "password2": "long enough 1"},
    )
    assert r.status_code == 403 and _head(client) == before
    r = client.post(
        "/signup",
        data={
            "csrf": "forged",
            "username": "eve",
            "password": "long enough 1",
            "password2": "long enough 1",
        },
    )
    assert r.status_code == 403 and _head(client) == before


def test_sign_in_is_throttled(client: TestClient) -> None:
    _signup(client, "frank")
    client.cookies.clear()
    token = _csrf(client.get("/signin").text)
    codes = [
        client.post(
            "/signin", data={"csrf": token, "username": "frank", "password": "wrong pass"}
        ).status_code
        for _ in range(6)
    ]
    assert codes == [401] * 5 + [429]
    # even the right password waits
    r = client.post(
        "/signin", data={"csrf": token, "username": "frank", "password": "long enough 1"}
    )
    assert r.status_code == 429


def test_signup_can_be_turned_off(tmp_path: Path) -> None:
    app = create_server(tmp_path, process_interval=0, signup=False)
    with TestClient(app) as c:
        assert c.get("/signup").status_code == 403
        assert "Sign up" not in c.get("/").text


def test_api_beside_the_pages(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    r = client.get("/api/v1/tasks/nonexistent")
    assert r.headers["content-type"].startswith("application/json")
    assert client.get("/no-such-page").headers["content-type"].startswith("text/html")
    assert client.get("/openapi.json").status_code == 200


def test_create_admin_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from api.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("admin password 1\n"))
    assert (
        main(
            [
                "users",
                "create-admin",
                "--data",
                str(tmp_path),
                "--username",
                "root",
                "--password-stdin",
            ]
        )
        == 0
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert (
        main(
            [
                "users",
                "create-admin",
                "--data",
                str(tmp_path),
                "--username",
                "root2",
                "--password-stdin",
            ]
        )
        != 0
    )
    assert (
        main(
            [
                "users",
                "set-role",
                "--data",
                str(tmp_path),
                "--username",
                "nobody",
                "--role",
                "moderator",
            ]
        )
        != 0
    )
    app = create_server(tmp_path, process_interval=0)
    with TestClient(app, follow_redirects=False) as c:
        token = _csrf(c.get("/signin").text)
        r = c.post(
            "/signin", data={"csrf": token, "username": "root", "password": "admin password 1"}
        )
        assert r.status_code == 303
        assert c.get("/dashboard").status_code == 200
        assert c.get("/mod/trees").status_code == 200


def _staff(c: TestClient, name: str, role: str) -> str:
    """A signed-in account with ``role`` (set by the same command as the CLI's set-role)."""
    from domain.service import accounts

    _signup(c, name)
    accounts.change_role(c.app.state.service.app, username=name, role=role)
    token = _csrf(c.get("/terms").text)
    c.post("/terms", data={"csrf": token, "accept": "yes"})
    return token


def test_change_password(client: TestClient) -> None:
    _signup(client, "gina")
    token = _csrf(client.get("/account/password").text)
    before = _head(client)
    form = {"csrf": token, "current": "wrong one 12", "password": "new secret 22"}
    assert (
        client.post("/account/password", data={**form, "password2": "new secret 22"}).status_code
        == 401
    )
    form["current"] = "long enough 1"
    assert (
        client.post("/account/password", data={**form, "password2": "other 3333"}).status_code
        == 400
    )
    short = {**form, "password": "short", "password2": "short"}
    assert client.post("/account/password", data=short).status_code == 400
    assert _head(client) == before  # refused: nothing recorded
    elsewhere = dict(client.cookies)  # the same account signed in on another device
    r = client.post("/account/password", data={**form, "password2": "new secret 22"})
    assert r.status_code == 303 and _head(client) > before
    assert client.get("/me").status_code == 200  # this session goes on
    client.cookies = elsewhere
    assert client.get("/me").status_code == 303  # the other one ended
    client.cookies.clear()
    token = _csrf(client.get("/signin").text)
    old = {"csrf": token, "username": "gina", "password": "long enough 1"}
    assert client.post("/signin", data=old).status_code == 401
    new = {**old, "password": "new secret 22"}
    assert client.post("/signin", data=new).status_code == 303


def test_admin_changes_roles(client: TestClient) -> None:
    _signup(client, "henry")
    assert client.get("/admin/users").status_code == 403
    client.cookies.clear()
    token = _staff(client, "boss", "admin")
    page = client.get("/admin/users?username=HENRY").text
    assert '<strong>henry</strong> is <span class="state">annotator</span>' in page
    before = _head(client)
    for data in (
        {"username": "henry", "role": "superuser"},
        {"username": "nobody", "role": "moderator"},
        {"username": "boss", "role": "annotator"},  # not one's own role
    ):
        assert client.post("/admin/users", data={"csrf": token, **data}).status_code == 400
    assert (
        client.post("/admin/users", data={"username": "henry", "role": "admin"}).status_code == 403
    )
    assert _head(client) == before
    r = client.post("/admin/users", data={"csrf": token, "username": "henry", "role": "moderator"})
    assert r.status_code == 303 and _head(client) > before
    client.cookies.clear()
    token = _csrf(client.get("/signin").text)
    client.post("/signin", data={"csrf": token, "username": "henry", "password": "long enough 1"})
    assert client.get("/mod/trees").status_code == 200
    assert client.get("/admin/users").status_code == 403


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def test_dashboard_shows_model_curves_safely(client: TestClient, tmp_path: Path) -> None:
    app = client.app.state.service.app
    runs = {name: tmp_path / "runs" / name for name in ("good", "fake", "escape", "none")}
    for folder in runs.values():
        folder.mkdir(parents=True)
    (runs["good"] / "curves.png").write_bytes(PNG)
    (runs["fake"] / "curves.png").write_text("<svg onload=alert(1)>")
    (tmp_path / "secret.png").write_bytes(PNG)
    (runs["escape"] / "curves.png").symlink_to(tmp_path / "secret.png")
    for name, folder in runs.items():
        app.register_model(name=name, path=str(folder), kind="sft", metrics={"loss": 1.0})
    app.register_model(name="hub", path="org/model", kind="base")
    _staff(client, "ivy", "moderator")
    page = client.get("/dashboard").text
    assert page.count('<img class="curves"') == 1 and "curves?model=good" in page
    r = client.get("/dashboard/curves?model=good")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == PNG and r.headers["x-content-type-options"] == "nosniff"
    for name in ("fake", "escape", "none", "hub", "unknown", "../good"):
        r = client.get("/dashboard/curves", params={"model": name})
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), name
    client.cookies.clear()
    _signup(client, "jack")
    assert client.get("/dashboard/curves?model=good").status_code == 403


def _export(seed: int) -> dict[str, Any]:
    from uuid import UUID

    ids = [str(UUID(int=seed * 100 + i, version=4)) for i in range(4)]

    def message(i: int, role: str, parent: str | None, rank: int | None, replies: list) -> dict:
        return {
            "message_id": ids[i],
            "parent_id": parent,
            "text": f"message {seed}/{i} **bold**",
            "role": role,
            "review_count": 3,
            "review_result": True,
            "rank": rank,
            "replies": replies,
        }

    root = message(
        0,
        "prompter",
        None,
        None,
        [message(i, "assistant", ids[0], i - 1, []) for i in (1, 2, 3)],
    )
    return {"message_tree_id": ids[0], "tree_state": "ready_for_export", "prompt": root}


def test_tree_view_and_dashboard_follow_changes(client: TestClient) -> None:
    """The tree view reads the tree now; the dashboard's training figures are reused only
    while the dataset trees are unchanged."""
    from domain.service.oa_import import import_trees

    service = client.app.state.service
    _staff(client, "kate", "admin")
    import_trees(service.app, [_export(1)])
    service.catch_up(service.head())
    ready = re.compile(r"<strong>(\d+)</strong> ready trees")
    page = client.get("/dashboard").text
    assert ready.search(page).group(1) == "1"
    assert ready.search(client.get("/dashboard").text).group(1) == "1"  # reused
    import_trees(service.app, [_export(2)])
    service.catch_up(service.head())
    page = client.get("/dashboard").text
    assert ready.search(page).group(1) == "2"
    tree_id = _export(2)["message_tree_id"]
    page = client.get(f"/mod/trees/{tree_id}").text
    assert page.count("<strong>bold</strong>") == 4 and "ready_for_export" in page
    token = _csrf(page)
    message_id = _export(2)["prompt"]["replies"][0]["message_id"]
    r = client.post(f"/mod/messages/{message_id}/edit", data={"csrf": token, "text": "*new*"})
    assert r.status_code == 303
    page = client.get(f"/mod/trees/{tree_id}").text
    assert "<em>new</em>" in page and page.count("<strong>bold</strong>") == 3
    old = client.get(f"/mod/trees/{tree_id}?version=1").text
    assert "<em>new</em>" not in old and "version 1 of" in old


def test_markdown_cache_gives_the_same_inert_html() -> None:
    from api.web import render

    render.markdown_cache_clear()
    xss = "<script>alert(1)</script><img onerror=alert(2)> **x** [a](javascript:alert(3))"
    first, again = render.markdown(xss), render.markdown(xss)
    assert first == again == render.markdown_once(xss)
    assert "<script" not in first and "<img" not in first and "href" not in first
    assert "&lt;script&gt;" in first and "<strong>x</strong>" in first
    assert render._render_markdown.cache_info().hits == 1
    long = "word " * (render.CACHED_TEXT // 5 + 1)
    assert render.markdown(long) == render.markdown_once(long)
    assert render._render_markdown.cache_info().currsize == 1  # a long text is not kept
