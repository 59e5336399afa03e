"""Client isolation: two untrusted API clients and a trusted one, against every endpoint
that takes an id (in the path or in the body).

Client A owns a tree (its user a1 wrote the prompt) and two open tasks; client B is an
untrusted stranger; T is the trusted official client. The rule: an untrusted client reads
and touches only its own users, messages, trees and tasks (another's user or task is not
found, another's message or tree is refused, 403); a trusted client reads everything, but
tasks are always scoped to the client whose user holds them; and whatever is refused
leaves the log unchanged. The test fails when an endpoint taking an id is not covered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.http.app import build_api, create_app
from api.http.service import Service
from tests import log_helpers
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, error, in_process, new_client_key

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def person(name: str) -> dict[str, str]:
    return {"id": name, "display_name": name.upper(), "auth_method": "local"}


def events(folder: Path) -> int:
    return int(log_helpers.read(folder, "SELECT count(*) FROM stored_events")[0][0])


@dataclass
class World:
    a: Env
    b: Env
    t: Env
    folder: Path
    ids: dict[str, str]

    def env(self, who: str) -> Env:
        return {"A": self.a, "B": self.b, "T": self.t}[who]


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    monkeypatch.setenv("DATAENGINE_RATE_LIMIT", "false")
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=3)
    async with in_process(app) as client:
        a = Env(client, await new_client_key(client))
        b = Env(client, await new_client_key(client))
        t = Env(client, WEB_KEY)
        ids: dict[str, str] = {}
        for env, name in ((a, "a1"), (a, "a2"), (a, "a3"), (b, "b1"), (t, "t1")):
            r = await env.post("/api/v1/frontend_users/", person(name))
            assert r.status_code == 200, r.text
            ids[name] = r.json()["user_id"]
        await a.prompt(person("a1"), "a prompt only client A may read", "pa")
        r = await a.get("/api/v1/frontend_messages/mpa")
        assert r.status_code == 200, r.text
        ids["message"] = r.json()["id"]
        r = await t.get(f"/api/v1/trees/{ids['message']}/events")
        ids["client_a"] = next(e["client_id"] for e in r.json() if e["client_id"])
        ids["ack_task"] = (await a.task(person("a2"), "label_initial_prompt"))["id"]
        ids["nack_task"] = (await a.task(person("a3"), "label_initial_prompt"))["id"]
        yield World(a, b, t, tmp_path, ids)


# (method, path, body, statuses for A, B, T). {m}: A's message, {u}: a1's user id,
# {ack}/{nack}: open tasks of A's users. 403 for another client's message or tree (the
# owner rule of /messages/{id}), 404 for another client's user or task.
READS: list[tuple[str, str, Any, tuple[int, int, int]]] = [
    ("GET", "/api/v1/messages/{m}", None, (200, 403, 200)),
    ("GET", "/api/v1/messages/{m}/conversation", None, (200, 403, 200)),
    ("GET", "/api/v1/messages/{m}/tree", None, (200, 403, 200)),
    ("GET", "/api/v1/messages/{m}/tree/state", None, (200, 403, 200)),
    ("GET", "/api/v1/messages/{m}/children", None, (200, 403, 200)),
    ("GET", "/api/v1/messages/{m}/descendants", None, (200, 403, 200)),
    ("GET", "/api/v1/frontend_messages/mpa", None, (200, 404, 404)),
    ("GET", "/api/v1/frontend_messages/mpa/conversation", None, (200, 404, 404)),
    ("GET", "/api/v1/frontend_messages/mpa/tree", None, (200, 404, 404)),
    ("GET", "/api/v1/frontend_messages/mpa/tree/state", None, (200, 404, 404)),
    ("GET", "/api/v1/frontend_messages/mpa/children", None, (200, 404, 404)),
    ("GET", "/api/v1/frontend_messages/mpa/descendants", None, (200, 404, 404)),
    ("GET", "/api/v1/trees/{m}", None, (200, 403, 200)),
    ("GET", "/api/v1/trees/{m}?as_of=1", None, (200, 403, 200)),
    ("GET", "/api/v1/trees/{m}/events", None, (200, 403, 200)),
    ("GET", "/api/v1/users/{u}", None, (200, 404, 200)),
    ("GET", "/api/v1/users/{u}/stats", None, (200, 404, 200)),
    ("GET", "/api/v1/users/{u}/stats/total", None, (200, 404, 200)),
    ("GET", "/api/v1/users/{u}/messages", None, (200, 404, 200)),
    ("GET", "/api/v1/users/{u}/messages/cursor", None, (200, 404, 200)),
    ("GET", "/api/v1/frontend_users/local/a1", None, (200, 404, 404)),
    ("GET", "/api/v1/frontend_users/local/a1/messages", None, (200, 404, 404)),
    ("GET", "/api/v1/frontend_users/local/a1/messages/cursor", None, (200, 404, 404)),
    ("GET", "/api/v1/messages/{m}/history", None, (403, 403, 200)),
    (
        "GET",
        "/api/v1/messages/{m}/images/" + "0" * 8 + "-0000-4000-8000-" + "0" * 12,
        None,
        (404, 404, 404),  # no such image: images.py's own rule decides for real ones
    ),
    ("GET", "/api/v1/leaderboards/total", None, (200, 200, 200)),
    ("GET", "/api/v1/trollboards/total", None, (403, 403, 200)),
    # OA's remaining operations (issue 16)
    ("GET", "/api/v1/messages/{m}/longest_conversation_in_tree", None, (200, 403, 200)),
    ("GET", "/api/v1/messages/{m}/max_children_in_tree", None, (200, 403, 200)),
    ("GET", "/api/v1/frontend_messages/mpa/longest_conversation_in_tree", None, (200, 404, 404)),
    ("GET", "/api/v1/frontend_messages/mpa/max_children_in_tree", None, (200, 404, 404)),
    ("GET", "/api/v1/users/{u}/stats/total/window", None, (200, 404, 200)),
    ("GET", "/api/v1/stats/cached/human_messages_by_lang", None, (200, 200, 200)),
    # ids in the query: another client named is refused (403, as OA); a user or message of
    # another client is not shown (the B row must not contain A's texts or names)
    ("GET", "/api/v1/users/{u}?api_client_id={c}", None, (200, 403, 200)),
    ("GET", "/api/v1/frontend_users/local/a1?api_client_id={c}", None, (200, 403, 200)),
    ("GET", "/api/v1/users/by_username?api_client_id={c}", None, (200, 403, 200)),
    ("GET", "/api/v1/users/by_display_name?api_client_id={c}", None, (200, 403, 200)),
    ("GET", "/api/v1/users/cursor?api_client_id={c}", None, (200, 403, 200)),
    ("GET", "/api/v1/users/by_username?gte_username=a&gt_id={u}", None, (200, 200, 200)),
    ("GET", "/api/v1/users/by_username?lte_username=b&lt_id={u}", None, (200, 200, 200)),
    ("GET", "/api/v1/users/by_display_name?gte_display_name=A&gt_id={u}", None, (200, 200, 200)),
    ("GET", "/api/v1/users/by_display_name?lte_display_name=B&lt_id={u}", None, (200, 200, 200)),
    ("GET", "/api/v1/messages/?api_client_id={c}", None, (200, 403, 200)),
    ("GET", "/api/v1/messages/?auth_method=local&username=a1", None, (200, 200, 200)),
    ("GET", "/api/v1/messages/cursor?api_client_id={c}", None, (200, 403, 200)),
    ("GET", "/api/v1/messages/cursor?user_id={u}", None, (200, 200, 200)),
    ("GET", "/api/v1/users/{u}/messages?api_client_id={c}", None, (200, 403, 200)),
    ("GET", "/api/v1/users/{u}/messages/cursor?api_client_id={c}", None, (200, 403, 200)),
    ("GET", "/api/v1/frontend_users/local/a1/messages?api_client_id={c}", None, (200, 403, 200)),
    (
        "GET",
        "/api/v1/frontend_users/local/a1/messages/cursor?api_client_id={c}",
        None,
        (200, 403, 200),
    ),
    ("GET", "/api/v1/text_labels/valid_labels?message_id={m}", None, (200, 403, 200)),
]

# Commands: each client's own user acts (a2 for A, b1 for B, t1 for T). Refusals first;
# A's and T's successful writes are checked last.
REPORT = {"type": "text_labels", "message_id": "{m}", "labels": {"spam": 1}, "is_report": True}
FREE = {"type": "text_labels", "message_id": "{m}", "labels": {"quality": 0.5}}
WRITES: list[tuple[str, str, Any, tuple[int, int, int]]] = [
    ("POST", "/api/v1/tasks/{ack}/ack", {"message_id": "f-ack"}, (204, 404, 404)),
    ("POST", "/api/v1/tasks/{nack}/nack", {"reason": "skip"}, (204, 404, 404)),
    # a frontend id in the body names the calling client's task only (A's is not a
    # collective task: OA's 2106)
    ("POST", "/api/v1/tasks/close", {"message_id": "f-ack"}, (400, 404, 404)),
    ("POST", "/api/v1/text_labels/", REPORT, (204, 403, 204)),
    ("POST", "/api/v1/text_labels/", FREE, (204, 403, 204)),
    ("POST", "/api/v1/tasks/interaction", REPORT, (200, 403, 200)),
    (
        "POST",
        "/api/v1/messages/{m}/emoji",
        {"op": "add", "emoji": "+1", "user": None},
        (202, 403, 202),
    ),
    ("PUT", "/api/v1/users/{u}?display_name=X", None, (403, 403, 204)),
    ("PUT", "/api/v1/messages/{m}/tree/state?halt=true", None, (403, 403, 200)),
    ("POST", "/api/v1/messages/{m}/edit", {"new_content": "edited", "user": None}, (403, 403, 204)),
    ("DELETE", "/api/v1/messages/{m}", None, (403, 403, 204)),
    ("PUT", "/api/v1/messages/{m}/undelete", None, (403, 403, 204)),
    # OA's admin operations (issue 16): trusted clients only; a purge preview records nothing
    ("POST", "/api/v1/admin/purge_user/{u}", None, (403, 403, 200)),
    ("POST", "/api/v1/admin/purge_user/{u}/messages", None, (403, 403, 200)),
    ("POST", "/api/v1/admin/admin/flagged_messages/{m}/processed", None, (403, 403, 200)),
    ("POST", "/api/v1/admin/flagged_messages/{m}/processed", None, (403, 403, 200)),
    # merge_users takes ids in its body: untrusted clients 403, an unknown source 404
    (
        "POST",
        "/api/v1/admin/merge_users",
        {"destination_user_id": "{u}", "source_user_ids": ["00000000-0000-4000-8000-" + "0" * 12]},
        (403, 403, 404),
    ),
    ("POST", "/api/v1/leaderboards/update/total", None, (403, 403, 204)),
    ("DELETE", "/api/v1/frontend_users/local/a1/messages", None, (403, 403, 404)),
    ("DELETE", "/api/v1/users/{u}/messages", None, (403, 403, 204)),
    ("DELETE", "/api/v1/users/{u}", None, (403, 403, 204)),
]
ACTOR = {"A": "a2", "B": "b1", "T": "t1"}


def fill(value: Any, ids: dict[str, str], who: str) -> Any:
    if isinstance(value, str):
        return value.format(
            m=ids["message"],
            u=ids["a1"],
            c=ids["client_a"],
            ack=ids["ack_task"],
            nack=ids["nack_task"],
        )
    if isinstance(value, dict):
        return {k: fill(v, ids, who) for k, v in value.items()}
    return value


async def call(w: World, who: str, method: str, path: str, body: Any) -> Any:
    env = w.env(who)
    headers = dict(env.h)
    if "/tasks/{" not in path:  # ack/nack name no user: the task's owner is looked up
        headers["x-oasst-user"] = f"local:{ACTOR[who]}"
    if isinstance(body, dict) and "type" in body:
        body = {**body, "user": person(ACTOR[who])}
    if isinstance(body, dict) and body.get("user", 0) is None:
        body = {**body, "user": person(ACTOR[who])}
    return await env.client.request(
        method, fill(path, w.ids, who), json=fill(body, w.ids, who), headers=headers
    )


def test_every_endpoint_taking_an_id_is_in_the_matrix(tmp_path: Path) -> None:
    covered = {(m, p.split("?")[0]) for m, p, _, _ in READS + WRITES}
    covered = {(m, p.replace("{m}", "{message_id}")) for m, p in covered}
    image = "/images/" + "0" * 8 + "-0000-4000-8000-" + "0" * 12
    covered = {(m, p.replace(image, "/images/{image_id}")) for m, p in covered}
    names = {"{u}": "{user_id}", "{ack}": "{task_id}", "{nack}": "{task_id}"}
    for short, long in names.items():
        covered = {(m, p.replace(short, long)) for m, p in covered}
    path_names = {
        "/api/v1/frontend_messages/mpa": "/api/v1/frontend_messages/{frontend_id}",
        "/api/v1/frontend_users/local/a1": "/api/v1/frontend_users/{auth_method}/{username}",
        "/api/v1/trees/{message_id}": "/api/v1/trees/{tree_id}",
        "/stats/total": "/stats/{time_frame}",
        "boards/total": "boards/{time_frame}",
        "update/total": "update/{time_frame}",
        "cached/human_messages_by_lang": "cached/{name}",
    }
    for short, long in path_names.items():
        covered = {(m, p.replace(short, long)) for m, p in covered}
    taking_ids = {
        (e.method, e.path)
        for e in build_api(Service(tmp_path)).endpoints
        if "{" in e.path and e.access != "root"
    }
    assert taking_ids - covered == set()
    # every id a query takes (a client, a user, a message) is named by some row too
    named = {
        (m, p.split("?")[0], q.split("=")[0])
        for m, p, _, _ in READS + WRITES
        if "?" in p
        for q in p.split("?")[1].split("&")
    }
    named = {(m, p.replace("{u}", "{user_id}"), q) for m, p, q in named}
    for short, long in path_names.items():
        named = {(m, p.replace(short, long), q) for m, p, q in named}
    query_ids = {
        (e.method, e.path, q)
        for e in build_api(Service(tmp_path)).endpoints
        if e.access != "root"
        for q in e.query
        if q.endswith("_id")
    }
    assert query_ids - {(m, p, q) for m, p, q in named} == set()


async def test_untrusted_clients_read_only_their_own(world: World) -> None:
    before = events(world.folder)
    for method, path, body, expected in READS:
        for who, status in zip("ABT", expected, strict=True):
            r = await call(world, who, method, path, body)
            assert r.status_code == status, (who, method, path, r.text)
            if who == "B" and "leaderboards" not in path:  # OA's leaderboard is global
                assert "a prompt only client A" not in r.text and "A1" not in r.text
    assert events(world.folder) == before  # reads record nothing


async def test_commands_are_scoped_and_refusals_record_nothing(world: World) -> None:
    for method, path, body, expected in WRITES:
        for who in "BAT":  # the stranger first: its refusal must not change what follows
            status = expected["ABT".index(who)]
            before = events(world.folder)
            r = await call(world, who, method, path, body)
            assert r.status_code == status, (who, method, path, r.text)
            if status >= 400:
                assert events(world.folder) == before, (who, method, path)
                assert r.json()["error_code"] and r.json()["message"]


async def test_task_ids_are_not_derived_from_the_user(world: World) -> None:
    a = world.a
    first = (await a.task(person("a1"), "random"))["id"]
    again = (await a.task(person("a1"), "random"))["id"]
    from uuid import UUID, uuid5

    user = UUID(world.ids["a1"])
    guesses = {str(uuid5(user, f"task/{n}")) for n in range(10)}
    assert first != again and not {first, again} & guesses
    assert UUID(first).version == 4


async def test_a_trusted_client_cannot_ack_another_clients_task(world: World) -> None:
    task = world.ids["ack_task"]
    before = events(world.folder)
    r = await world.t.post(f"/api/v1/tasks/{task}/ack", {"message_id": "stolen"}, world.t.trusted)
    error(r, 404, 2100)
    assert events(world.folder) == before
