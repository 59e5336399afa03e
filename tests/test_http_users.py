"""OA's /users endpoints: ordered lists and keyset pages, one user by id, moderation (PUT)
and deletion (an anonymising event), each scoped to the calling client unless trusted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from api.http.app import create_app
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, error, in_process, new_client_key

pytestmark = pytest.mark.anyio
NAMES = {"u1": "Zoe", "u2": "Adam", "u3": "Mia", "u4": "Adam", "u5": "Bea"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def who(username: str) -> dict[str, str]:
    return {"id": username, "display_name": NAMES.get(username, username), "auth_method": "local"}


@pytest.fixture
async def clients(tmp_path, monkeypatch) -> AsyncIterator[tuple[Env, Env]]:
    """Client A with users u1..u5, client B with u1 and u9 (discord)."""
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=1)
    async with in_process(app) as client:
        a = Env(client, await new_client_key(client))
        b = Env(client, await new_client_key(client))
        for name in NAMES:
            r = await a.post("/api/v1/frontend_users/", who(name))
            assert r.status_code == 200, r.text
        for body in (who("u1"), {"id": "u9", "display_name": "Nia", "auth_method": "discord"}):
            assert (await b.post("/api/v1/frontend_users/", body)).status_code == 200
        yield a, b


async def names(env: Env, path: str, headers: dict | None = None, **params: str) -> list[str]:
    r = await env.get(path, headers, **params)
    assert r.status_code == 200, r.text
    return [u["id"] for u in r.json()]


async def test_ordered_lists_are_scoped_to_the_client(clients: tuple[Env, Env]):
    a, b = clients
    assert await names(a, "/api/v1/users/by_username") == ["u1", "u2", "u3", "u4", "u5"]
    assert await names(b, "/api/v1/users/by_username") == ["u1", "u9"]
    everyone = await names(a, "/api/v1/users/by_username", a.trusted)
    assert everyone.count("u1") == 2 and len(everyone) == 7
    by_name = (await a.get("/api/v1/users/by_display_name")).json()
    assert [u["display_name"] for u in by_name] == ["Adam", "Adam", "Bea", "Mia", "Zoe"]
    adams = [u for u in by_name if u["display_name"] == "Adam"]
    assert adams[0]["user_id"] < adams[1]["user_id"]  # ties ordered by id
    # keyset bounds: from a name on, strictly after (name, id), up to a name, descending
    assert await names(a, "/api/v1/users/by_username", gte_username="u3") == ["u3", "u4", "u5"]
    after = await names(
        a, "/api/v1/users/by_display_name", gte_display_name="Adam", gt_id=adams[0]["user_id"]
    )
    assert after == [adams[1]["id"], "u5", "u3", "u1"]
    assert await names(a, "/api/v1/users/by_username", lte_username="u2", desc="true") == [
        "u2",
        "u1",
    ]
    assert await names(a, "/api/v1/users/by_username", max_count="2") == ["u1", "u2"]
    assert await names(a, "/api/v1/users/by_display_name", search_text="da") == [
        u["id"] for u in adams
    ]
    assert await names(b, "/api/v1/users/by_username", auth_method="discord") == ["u9"]
    error(await a.get("/api/v1/users/by_username", gt_id=adams[0]["user_id"]), 400, 0)
    error(await a.get("/api/v1/users/by_username", max_count="10001"), 422, 422)
    service = a.client._transport.app.state.service  # type: ignore[attr-defined]
    b_client = str(service.app.authenticate(b.key).id)
    error(await a.get("/api/v1/users/by_username", api_client_id=b_client), 403, 2)
    assert await names(a, "/api/v1/users/by_username", a.trusted, api_client_id=b_client) == [
        "u1",
        "u9",
    ]


async def test_cursor_pages_users_by_either_key(clients: tuple[Env, Env]):
    a, _ = clients
    path = "/api/v1/users/cursor"
    first = (await a.get(path, max_count="2")).json()
    assert [u["id"] for u in first["items"]] == ["u1", "u2"] and first["prev"] is None
    assert first["sort_key"] == "username" and first["next"].endswith("$u2")
    second = (await a.get(path, max_count="2", after=first["next"])).json()
    assert [u["id"] for u in second["items"]] == ["u3", "u4"]
    last = (await a.get(path, max_count="2", after=second["next"])).json()
    assert [u["id"] for u in last["items"]] == ["u5"] and last["next"] is None
    back = (await a.get(path, max_count="2", before=last["prev"])).json()
    assert [u["id"] for u in back["items"]] == ["u3", "u4"]
    seen, cursor = [], None
    while True:
        page = (
            await a.get(
                path,
                max_count="2",
                sort_key="display_name",
                **({"after": cursor} if cursor else {}),
            )
        ).json()
        seen += [u["display_name"] for u in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ["Adam", "Adam", "Bea", "Mia", "Zoe"]
    error(await a.get(path, sort_key="age"), 400, 100)


async def test_one_user_update_and_visibility(clients: tuple[Env, Env]):
    a, b = clients
    u3 = (await a.get("/api/v1/frontend_users/local/u3")).json()
    path = f"/api/v1/users/{u3['user_id']}"
    got = (await a.get(path)).json()
    assert got == u3 and got["display_name"] == "Mia" and got["enabled"] is True
    error(await b.get(path), 404, 4002)  # another client's user
    assert (await b.get(path, b.trusted)).json()["id"] == "u3"
    error(await a.get("/api/v1/users/not-a-uuid"), 404, 4002)
    # moderation needs a trusted client; only the given fields change
    error(await a.client.put(path, params={"notes": "x"}, headers=a.h), 403, 2)
    r = await a.client.put(
        path,
        params={
            "notes": "rude",
            "enabled": "false",
            "show_on_leaderboard": "false",
            "tos_acceptance": "true",
        },
        headers=a.trusted,
    )
    assert r.status_code == 204, r.text
    got = (await a.get(path)).json()
    assert (got["notes"], got["enabled"], got["show_on_leaderboard"], got["display_name"]) == (
        "rude",
        False,
        False,
        "Mia",
    )
    assert got["tos_acceptance_date"] is not None
    error(await a.post("/api/v1/tasks/", {"type": "random", "user": who("u3")}), 503, 4001)
    r = await a.client.put(path, params={"display_name": "Mila"}, headers=a.trusted)
    assert r.status_code == 204 and (await a.get(path)).json()["display_name"] == "Mila"
    error(await a.client.put(path, params={"enabled": "sometimes"}, headers=a.trusted), 422, 422)
    error(
        await a.client.put(
            "/api/v1/users/00000000-0000-0000-0000-000000000000",
            params={"notes": "x"},
            headers=a.trusted,
        ),
        404,
        4002,
    )


async def test_delete_anonymises_by_an_event(clients: tuple[Env, Env]):
    a, _ = clients
    assert await a.prompt(who("u5"), "A prompt that stays", "p1")
    u5 = (await a.get("/api/v1/frontend_users/local/u5")).json()
    path = f"/api/v1/users/{u5['user_id']}"
    error(await a.client.delete(path, headers=a.h), 403, 2)
    service = a.client._transport.app.state.service  # type: ignore[attr-defined]
    before = service.head()
    assert (await a.client.delete(path, headers=a.trusted)).status_code == 204
    topics = [
        t
        for (t,) in service.events_reader().execute(
            "SELECT topic FROM stored_events WHERE rowid > ?", (before,)
        )
    ]
    assert topics == ["domain.user:User.ProfileUpdated"]  # recorded, not changed in place
    got = (await a.get(path)).json()
    assert got["deleted"] is True and got["display_name"] == "Deleted User"
    assert got["id"] == f"deleted_{u5['user_id']}" and got["show_on_leaderboard"] is False
    # the old name finds nothing, and naming the user again does not undo the deletion
    error(await a.get("/api/v1/frontend_users/local/u5"), 404, 4002)
    assert "u5" not in await names(a, "/api/v1/users/by_username")
    assert await names(a, "/api/v1/users/by_username", search_text="deleted_") == [got["id"]]
    error(await a.post("/api/v1/tasks/", {"type": "random", "user": who("u5")}), 403, 4001)
    error(await a.post("/api/v1/frontend_users/", who("u5")), 403, 4001)
    assert (await a.get(path)).json()["display_name"] == "Deleted User"
    # the messages stay (OA keeps them), authored by the anonymised user
    messages = (await a.get(f"{path}/messages", include_user="true")).json()
    assert [m["text"] for m in messages] == ["A prompt that stays"]
    assert messages[0]["user"]["display_name"] == "Deleted User"
    # deleting again records nothing
    before = service.head()
    assert (await a.client.delete(path, headers=a.trusted)).status_code == 204
    assert service.head() == before
