"""Images in the web app: a prompt page uploads them, task pages and the tree view show
them, only signed-in people fetch them, deletion hides them, bad files record nothing."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from api.http.ratelimit import RateLimits
from api.server import create_server
from domain.model.config import TreeConfig

SMALL = TreeConfig(goal_tree_size=3, min_goal_tree_size=1, num_reviews_initial_prompt=2)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def picture(fmt: str = "PNG", colour: tuple[int, int, int] = (20, 120, 220)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 200), colour).save(out, fmt)
    return out.getvalue()


def person(c: TestClient, name: str, role: str | None = None) -> str:
    from domain.service import accounts

    token = _csrf(c.get("/signup").text)
    pw = "long enough 1"
    c.post("/signup", data={"csrf": token, "username": name, "password": pw, "password2": pw})
    if role:
        accounts.change_role(c.app.state.service.app, username=name, role=role)
    token = _csrf(c.get("/terms").text)
    c.post("/terms", data={"csrf": token, "accept": "yes"})
    return token


@pytest.fixture
def app(tmp_path: Path) -> Any:
    server = create_server(
        tmp_path, SMALL, process_interval=0, rate_limits=RateLimits(enabled=False)
    )
    with TestClient(server, follow_redirects=False) as c:
        c.folder = tmp_path  # type: ignore[attr-defined]
        yield c


def prompt_page(c: TestClient, token: str) -> str:
    r = c.post("/tasks/next", data={"csrf": token, "type": "initial_prompt", "lang": "en"})
    assert r.status_code == 303, r.text
    return r.headers["location"].split("?")[0]


def head(c: TestClient) -> int:
    return c.app.state.service.head()


def test_prompt_with_images_shown_in_tasks_and_tree_then_hidden(app: TestClient):
    token = person(app, "mia", "moderator")
    url = prompt_page(app, token)
    page = app.get(url).text
    assert 'enctype="multipart/form-data"' in page and 'name="images"' in page
    files = [
        ("images", ("a.png", picture(), "image/png")),
        ("images", ("b.jpg", picture("JPEG"), "image/jpeg")),
    ]
    data = {"csrf": token, "text": "Which colour is this?", "want": "label_initial_prompt"}
    assert app.post(url, data=data, files=files).status_code == 303
    service = app.app.state.service
    service.catch_up(service.head())
    (tree_id,) = [r[0] for r in service.reader().execute("SELECT tree_id FROM trees")]

    # another person's label task shows the images, drawn at most 320 px wide
    other = TestClient(app.app, follow_redirects=False)
    other_token = person(other, "noor")
    r = other.post("/tasks/next", data={"csrf": other_token, "type": "label_initial_prompt"})
    task_page = other.get(r.headers["location"]).text
    srcs = re.findall(r'<img src="(/images/[^"]+)" width="320" height="100"', task_page)
    assert len(srcs) == 2 and all(s.startswith(f"/images/{tree_id}/") for s in srcs)
    got = other.get(srcs[0])
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(got.content)).size == (640, 200)

    # the tree view shows them; nobody signed out fetches them
    tree_page = app.get(f"/mod/trees/{tree_id}").text
    assert tree_page.count(f'<img src="/images/{tree_id}/') == 2
    assert TestClient(app.app, follow_redirects=False).get(srcs[0]).status_code == 303

    # deleting the prompt hides its images everywhere
    r = app.post(f"/mod/messages/{tree_id}/delete", data={"csrf": token})
    assert r.status_code == 303, r.text
    assert other.get(srcs[0]).status_code == 404
    assert app.get(srcs[1]).status_code == 404
    assert "<img src=" not in app.get(f"/mod/trees/{tree_id}").text


@pytest.mark.parametrize(
    "raw", [b"not an image at all", picture()[:-40], picture("GIF")], ids=["text", "cut", "gif"]
)
def test_bad_image_on_the_prompt_page_records_nothing(app: TestClient, raw: bytes):
    token = person(app, "omar")
    url = prompt_page(app, token)
    before = head(app)
    files = [("images", ("x.png", raw, "image/png"))]
    r = app.post(url, data={"csrf": token, "text": "What is this?"}, files=files)
    assert r.status_code == 400 and "x.png" in r.text and 'name="text"' in r.text
    assert head(app) == before
    assert [
        p for p in (app.folder / "blobs").rglob("*") if p.is_file() and p.suffix != ".key"
    ] == []
