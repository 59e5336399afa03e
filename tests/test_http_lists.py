"""Messages by the client's own ids (/frontend_messages) and lists of messages: OA's
/messages/ filters, keyset pages (/messages/cursor) and the per-user lists, each scoped
to the calling client unless it is trusted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from api.http.app import create_app
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, error, in_process, new_client_key, user

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class World:
    """Client A: prompts p1..p5 by u1 (three) and u2 (two), p1 grown by one reply;
    client B: its own u1 with a prompt under the same frontend id p1."""

    def __init__(self, a: Env, b: Env):
        self.a, self.b = a, b
        self.trusted = a.trusted


@pytest.fixture
async def world(tmp_path, monkeypatch) -> AsyncIterator[World]:
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=1)
    async with in_process(app) as client:
        a = Env(client, await new_client_key(client))
        b = Env(client, await new_client_key(client))
        await a.prompt(user(1), "What is the capital of France?", "p1")
        await a.accept_prompt([user(3), user(4)])
        await a.reply(user(5), "Paris.", "r1")
        for n, who in ((2, user(2)), (3, user(1)), (4, user(2)), (5, user(1))):
            await a.prompt(who, f"Prompt number {n}", f"p{n}")
        await b.prompt(user(1), "A prompt of client B", "p1")
        yield World(a, b)


# ---------------------------------------------------------------- frontend_messages
async def test_frontend_messages_are_read_by_the_clients_own_ids(world: World):
    a, b = world.a, world.b
    f = "/api/v1/frontend_messages"
    mine = (await a.get(f"{f}/mp1")).json()
    theirs = (await b.get(f"{f}/mp1")).json()
    assert mine["text"] == "What is the capital of France?" and mine["frontend_message_id"] == "mp1"
    assert theirs["text"] == "A prompt of client B" and theirs["id"] != mine["id"]
    assert (await a.get(f"/api/v1/messages/{mine['id']}")).json() == mine
    reply = (await a.get(f"{f}/mr1")).json()
    assert reply["parent_id"] == mine["id"] and reply["is_assistant"] is True
    conversation = (await a.get(f"{f}/mr1/conversation")).json()["messages"]
    assert [m["text"] for m in conversation] == ["What is the capital of France?", "Paris."]
    tree = (await a.get(f"{f}/mr1/tree")).json()
    assert tree["id"] == mine["id"] and {m["id"] for m in tree["messages"]} == {
        mine["id"],
        reply["id"],
    }
    assert [m["id"] for m in (await a.get(f"{f}/mp1/children")).json()] == [reply["id"]]
    descendants = (await a.get(f"{f}/mp1/descendants")).json()
    assert descendants["id"] == mine["id"] and [m["id"] for m in descendants["messages"]] == [
        reply["id"]
    ]
    state = (await a.get(f"{f}/mr1/tree/state")).json()
    assert state["message_tree_id"] == mine["id"] and state["state"] == "growing"
    # another client's frontend ids name nothing here, trusted or not
    error(await b.get(f"{f}/mr1"), 404, 2001)
    error(await a.get(f"{f}/nowhere/tree"), 404, 2001)
    error(await a.client.get(f"{f}/mr1", headers=world.trusted), 404, 2001)
    error(await a.client.get(f"{f}/mr1"), 403, 2)


# ---------------------------------------------------------------- /messages/
async def test_message_list_filters_and_scope(world: World):
    a, b = world.a, world.b
    listed = (await a.get("/api/v1/messages/")).json()
    texts = [m["text"] for m in listed]
    assert texts[:3] == ["Prompt number 5", "Prompt number 4", "Prompt number 3"]  # newest first
    assert len(listed) == 6 and "A prompt of client B" not in texts  # A's own only
    oldest = (await a.get("/api/v1/messages/", desc="false", max_count="2")).json()
    assert [m["text"] for m in oldest] == ["What is the capital of France?", "Paris."]
    roots = (await a.get("/api/v1/messages/", only_roots="true")).json()
    assert "Paris." not in [m["text"] for m in roots] and len(roots) == 5
    by_u2 = (await a.get("/api/v1/messages/", auth_method="local", username="u2")).json()
    assert [m["text"] for m in by_u2] == ["Prompt number 4", "Prompt number 2"]
    # a time window, by the messages' own times
    times = {m["text"]: m["created_date"] for m in listed}
    window = (
        await a.get(
            "/api/v1/messages/",
            start_date=times["Prompt number 2"],
            end_date=times["Prompt number 4"],
        )
    ).json()
    assert [m["text"] for m in window] == ["Prompt number 4", "Prompt number 3", "Prompt number 2"]
    assert (await a.get("/api/v1/messages/", lang="de")).json() == []
    # scope: B sees its one message, A may not ask for B's, a trusted client may
    assert [m["text"] for m in (await b.get("/api/v1/messages/")).json()] == [
        "A prompt of client B"
    ]
    everything = (await a.get("/api/v1/messages/", world.trusted, max_count="100")).json()
    assert len(everything) == 7
    service = a.client._transport.app.state.service  # type: ignore[attr-defined]
    b_client = str(service.app.authenticate(b.key).id)
    only_b = (await a.get("/api/v1/messages/", world.trusted, api_client_id=b_client)).json()
    assert [m["text"] for m in only_b] == ["A prompt of client B"]
    error(await a.get("/api/v1/messages/", api_client_id=b_client), 403, 2)
    # bad parameters: typed errors
    error(await a.get("/api/v1/messages/", username="u2"), 400, 2012)
    error(await a.get("/api/v1/messages/", max_count="0"), 422, 422)
    error(await a.get("/api/v1/messages/", max_count="1001"), 422, 422)
    error(await a.get("/api/v1/messages/", start_date="yesterday"), 422, 422)
    # deleted messages only when asked for
    m = (await a.get("/api/v1/frontend_messages/mp5")).json()
    assert (
        await a.client.delete(f"/api/v1/messages/{m['id']}", headers=world.trusted)
    ).status_code == 204
    assert m["id"] not in [x["id"] for x in (await a.get("/api/v1/messages/")).json()]
    allowed = (await a.get("/api/v1/messages/", allow_deleted="true")).json()
    assert m["id"] in [x["id"] for x in allowed]


async def _pages(
    env: Env, path: str, direction: str, cursor: str | None, **params: str
) -> list[list[str]]:
    pages = []
    while True:
        query = dict(params)
        if cursor is not None:
            query[direction] = cursor
        r = await env.get(path, **query)
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["sort_key"] == "created_date"
        pages.append([m["id"] for m in page["items"]])
        cursor = page["next" if direction == "after" else "prev"]
        if cursor is None or not page["items"]:
            return pages


async def test_cursor_pages_walk_forward_and_back(world: World):
    a = world.a
    everything = [m["id"] for m in (await a.get("/api/v1/messages/", desc="false")).json()]
    assert len(everything) == 6
    path = "/api/v1/messages/cursor"
    forward = await _pages(a, path, "after", None, max_count="4")
    assert forward == [everything[:4], everything[4:]]
    first = (await a.get(path, max_count="4")).json()
    assert first["prev"] is None and first["order"] == "asc"
    ident, _, moment = first["next"].partition("$")
    assert ident == everything[3] and datetime.fromisoformat(moment) == datetime.fromisoformat(
        first["items"][-1]["created_date"]
    )
    # from the end back: the page before the last one is the first one again
    last = (await a.get(path, max_count="4", after=first["next"])).json()
    assert [m["id"] for m in last["items"]] == everything[4:] and last["next"] is None
    back = (await a.get(path, max_count="4", before=last["prev"])).json()
    assert [m["id"] for m in back["items"]] == everything[:4]
    # small pages, both ways, cover everything exactly once
    pages = await _pages(a, path, "after", None, max_count="2")
    assert [i for page in pages for i in page] == everything
    newest = (await a.get(path, max_count="2", desc="true")).json()
    assert newest["order"] == "desc" and [m["id"] for m in newest["items"]] == everything[:-3:-1]
    walked = await _pages(a, path, "after", None, max_count="2", desc="true")
    assert [i for page in walked for i in page] == everything[::-1]
    # a bare ISO time is a cursor too; a broken one is refused
    since = (await a.get(path, after=first["items"][2]["created_date"])).json()
    assert [m["id"] for m in since["items"]] == everything[2:]
    error(await a.get(path, after="not-a-time"), 400, 101)
    error(await a.get(path, before=f"{everything[0]}$garbage"), 400, 101)
    # the authors, on request
    page = (await a.get(path, include_user="true", max_count="1")).json()
    assert page["items"][0]["user"]["id"] == "u1"
    assert (await a.get(path, max_count="1")).json()["items"][0]["user"] is None
    # search: every term, in one language
    found = (await a.get(path, search_query="prompt number", lang="en")).json()["items"]
    assert sorted(m["text"] for m in found) == [f"Prompt number {n}" for n in range(2, 6)]
    assert (await a.get(path, search_query="100% _", lang="en")).json()["items"] == []
    error(await a.get(path, search_query="prompt"), 422, 422)


async def test_messages_of_one_user(world: World):
    a, b = world.a, world.b
    u1 = (await a.get("/api/v1/frontend_users/local/u1")).json()
    mine = (await a.get(f"/api/v1/users/{u1['user_id']}/messages")).json()
    assert [m["text"] for m in mine] == [
        "Prompt number 5",
        "Prompt number 3",
        "What is the capital of France?",
    ]
    page = (await a.get(f"/api/v1/users/{u1['user_id']}/messages/cursor", max_count="2")).json()
    assert [m["text"] for m in page["items"]] == [
        "What is the capital of France?",
        "Prompt number 3",
    ]
    following = (
        await a.get(f"/api/v1/users/{u1['user_id']}/messages/cursor", after=page["next"])
    ).json()
    assert [m["text"] for m in following["items"]] == ["Prompt number 5"]
    same = (await a.get("/api/v1/frontend_users/local/u1/messages")).json()
    assert same == mine
    paged = (await a.get("/api/v1/frontend_users/local/u1/messages/cursor", desc="true")).json()
    assert [m["id"] for m in paged["items"]] == [m["id"] for m in mine]
    # B's u1 is another user; A cannot list it, a trusted client can
    b_u1 = (await b.get("/api/v1/frontend_users/local/u1")).json()
    assert [
        m["text"] for m in (await b.get("/api/v1/frontend_users/local/u1/messages")).json()
    ] == ["A prompt of client B"]
    error(await a.get(f"/api/v1/users/{b_u1['user_id']}/messages"), 404, 4002)
    theirs = (await a.get(f"/api/v1/users/{b_u1['user_id']}/messages", world.trusted)).json()
    assert [m["text"] for m in theirs] == ["A prompt of client B"]
    error(await a.get("/api/v1/frontend_users/local/nobody/messages"), 404, 4002)
    error(
        await a.get("/api/v1/users/00000000-0000-0000-0000-000000000000/messages/cursor"), 404, 4002
    )
