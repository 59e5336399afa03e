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
