"""The HTTP layer: auth matrix, one bad input per reachable error code, idempotent retries,
moderation and history endpoints, the OpenAPI document, and no input ever yielding a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.http.app import create_app
from tests.http_helpers import (
    ROOT,
    SMALL,
    WEB_KEY,
    Env,
    error,
    in_process,
    new_client_key,
    user,
)

pytestmark = pytest.mark.anyio
U = user(1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def env(tmp_path, monkeypatch) -> AsyncIterator[Env]:
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=1)
    async with in_process(app) as client:
        env = Env(client, await new_client_key(client))
        env.service = app.state.service  # type: ignore[attr-defined]
        yield env


# ---------------------------------------------------------------- auth
async def test_auth_matrix(env: Env):
    c = env.client
    body = {"type": "random", "user": U}
    error(await c.post("/api/v1/tasks/", json=body), 403, 2)  # no key
    error(await c.post("/api/v1/tasks/", json=body, headers={"X-API-Key": "nope"}), 403, 2)
    # a key in the URL is refused (issue 13: it would be written into access logs)
    error(await c.post(f"/api/v1/tasks/?api_key={env.key}", json=body), 403, 2)
    await env.prompt(U, "a prompt to moderate", "p1")
    tree_id = (await env.label_task(user(2)))["message_id"]
    state = f"/api/v1/messages/{tree_id}/tree/state?halt=true"
    error(await c.put(state, headers=env.h), 403, 2)  # untrusted
    assert (await c.get(state, headers=env.h)).status_code == 200
    r = await c.put(state, headers=env.trusted)  # trusted
    assert r.status_code == 200 and r.json()["state"] == "halted_by_moderator", r.text
    # root: only with a valid bearer token
    admin = "/api/v1/admin/api_client"
    req = {"description": "bot", "frontend_type": "bot"}
    error(await c.post(admin, json=req), 403, 3)
    error(await c.post(admin, json=req, headers={"Authorization": "Bearer wrong"}), 403, 3)
    error(await c.post(admin, json=req, headers={"X-API-Key": WEB_KEY}), 403, 3)
    disabled = await c.post(
        admin, json={**req, "enabled": False}, headers={"Authorization": f"Bearer {ROOT}"}
    )
    error(await c.post("/api/v1/tasks/", json=body, headers={"X-API-Key": disabled.json()}), 403, 2)
    # public endpoints need no key
    for path in ("/health", "/openapi.json", "/docs", "/api/v1/text_labels/report_labels"):
        assert (await c.get(path)).status_code == 200, path
    error(await c.get("/api/v1/text_labels/valid_labels"), 403, 2)
    error(await c.get("/api/v1/audit/digest"), 403, 2)
    # another untrusted client cannot read this client's messages; a trusted one can
    other = {"X-API-Key": await new_client_key(c)}
    error(await c.get(f"/api/v1/messages/{tree_id}", headers=other), 403, 2)
    assert (await c.get(f"/api/v1/messages/{tree_id}", headers=env.trusted)).status_code == 200


# ---------------------------------------------------------------- errors
async def test_validation_errors_name_the_field(env: Env):
    msg = error(await env.post("/api/v1/tasks/", {"type": "dance", "user": U}), 422, 422)
    assert "$.type" in msg
    msg = error(await env.post("/api/v1/tasks/", {"user": {"id": 5}}), 422, 422)
    assert "$.user" in msg
    json_type = {**env.h, "Content-Type": "application/json"}  # other types: 415
    r = await env.client.post("/api/v1/tasks/", content=b"{not json", headers=json_type)
    error(r, 422, 422)
    big = {"type": "random", "user": U, "pad": "x" * (300 * 1024)}
    error(await env.post("/api/v1/tasks/", big), 413, 422)
    # query parameters are checked against the document before any look-up (api.http.params)
    r = await env.client.get("/api/v1/messages/x/tree?include_spam=maybe", headers=env.h)
    assert "include_spam" in error(r, 422, 422)


async def test_one_bad_input_per_error_code(env: Env):
    c, h = env.client, env.h
    error(await env.post("/api/v1/tasks/", {"type": "rank_initial_prompts", "user": U}), 503, 1006)
    error(await env.post("/api/v1/tasks/", {"type": "random"}), 400, 4000)
    error(
        await env.post("/api/v1/tasks/", {"type": "random", "user": U, "collective": True}),
        400,
        2106,
    )
    error(await c.get("/api/v1/messages/not-an-id", headers=h), 404, 2001)
    error(
        await c.get("/api/v1/messages/00000000-0000-0000-0000-000000000001", headers=h), 404, 2001
    )
    error(
        await c.get("/api/v1/trees/00000000-0000-0000-0000-000000000001/events", headers=h),
        404,
        2006,
    )
    error(
        await env.post(
            "/api/v1/tasks/00000000-0000-0000-0000-000000000001/ack", {"message_id": "x"}
        ),
        404,
        2100,
    )
    error(await c.get("/nowhere", headers=h), 404, 0)
    # text rules
    task = await env.task(U, "initial_prompt")
    await env.ack(task, "t1")
    reply = {
        "type": "text_reply_to_message",
        "message_id": "t1",
        "user_message_id": "n1",
        "user": U,
    }
    error(await env.post("/api/v1/tasks/interaction", {**reply, "text": "   "}), 400, 1010)
    error(await env.post("/api/v1/tasks/interaction", {**reply, "text": "x" * 2001}), 400, 1008)
    error(
        await env.post("/api/v1/tasks/interaction", {**reply, "message_id": "zz", "text": "t"}),
        404,
        2100,
    )  # never acknowledged with that id
    ranking = {"type": "message_ranking", "message_id": "t1", "ranking": [0], "user": U}
    error(await env.post("/api/v1/tasks/interaction", ranking), 400, 2102)
    rating = {"type": "message_rating", "message_id": "t1", "rating": 1, "user": U}
    error(await env.post("/api/v1/tasks/interaction", rating), 400, 1003)
    assert (
        await env.post("/api/v1/tasks/interaction", {**reply, "text": "same"})
    ).status_code == 200
    error(await env.post(f"/api/v1/tasks/{task['id']}/ack", {"message_id": "other"}), 400, 2105)
    again = await env.task(U, "initial_prompt")
    await env.ack(again, "t2")
    error(await env.post(f"/api/v1/tasks/{again['id']}/ack", {"message_id": "t3"}), 400, 2103)
    dup = {**reply, "message_id": "t2", "user_message_id": "n2", "text": "same"}
    error(await env.post("/api/v1/tasks/interaction", dup), 400, 1009)
    # labels: not acknowledged, unknown label, mandatory label missing
    label = await env.label_task(user(2))
    labels = {
        "type": "text_labels",
        "message_id": label["message_id"],
        "task_id": label["id"],
        "user": user(2),
        "labels": {"spam": 0},
    }
    error(await env.post("/api/v1/tasks/interaction", labels), 400, 2104)
    await env.ack(label, "l1")
    error(
        await env.post("/api/v1/tasks/interaction", {**labels, "labels": {"bogus": 1}}), 400, 2051
    )
    error(
        await env.post("/api/v1/tasks/interaction", {**labels, "labels": {"quality": 1}}), 400, 2052
    )
    # emoji and state transitions
    m = f"/api/v1/messages/{label['message_id']}"
    error(await env.post(m + "/emoji", {"user": U, "emoji": "dance"}), 400, 5000)
    error(await c.put(m + "/tree/state?halt=false", headers=env.trusted), 409, 2040)
    # pending-task limit (8 open tasks within the recent window)
    for _ in range(7):
        await env.task(user(3), "initial_prompt")
    await env.task(user(3), "initial_prompt")
    error(await env.post("/api/v1/tasks/", {"type": "initial_prompt", "user": user(3)}), 400, 1012)


async def test_ranking_must_be_a_permutation_and_nack_hides_the_target(env: Env):
    await env.prompt(U, "Which river is longest?", "p1")
    tree_id = None
    for i in (2, 3):  # two reviews accept the prompt; the lottery makes it grow
        task = await env.label_task(user(i))
        tree_id = task["message_id"]
        await env.ack(task, f"l{i}")
        r = await env.post(
            "/api/v1/tasks/interaction",
            {
                "type": "text_labels",
                "message_id": tree_id,
                "task_id": task["id"],
                "user": user(i),
                "labels": {n: 0 for n in task["valid_labels"]},
            },
        )
        assert r.status_code == 200, r.text
    for i in (4, 5):
        task = await env.task(user(i), "assistant_reply")
        await env.ack(task, f"a{i}")
        r = await env.post(
            "/api/v1/tasks/interaction",
            {
                "type": "text_reply_to_message",
                "message_id": f"a{i}",
                "user_message_id": f"r{i}",
                "text": f"The Nile, says {i}",
                "user": user(i),
            },
        )
        assert r.status_code == 200, r.text
    for i in (6, 7):
        for _ in range(2):
            task = await env.task(user(i), "label_assistant_reply")
            await env.ack(task, f"x{i}{task['id']}")
            r = await env.post(
                "/api/v1/tasks/interaction",
                {
                    "type": "text_labels",
                    "message_id": task["message_id"],
                    "task_id": task["id"],
                    "user": user(i),
                    "labels": {n: 0 for n in task["valid_labels"]},
                },
            )
            assert r.status_code == 200, r.text
    task = await env.task(user(8), "rank_assistant_replies")
    assert (
        len(task["replies"]) == 2 and [m["text"] for m in task["reply_messages"]] == task["replies"]
    )
    await env.ack(task, "k8")
    ranking = {"type": "message_ranking", "message_id": "k8", "user": user(8)}
    error(await env.post("/api/v1/tasks/interaction", {**ranking, "ranking": [0, 0]}), 400, 2003)
    r = await env.post("/api/v1/tasks/interaction", {**ranking, "ranking": [1, 0]})
    assert r.status_code == 200, r.text
    # a skip: the same user is not offered that ranking again
    skipped = await env.task(user(9), "rank_assistant_replies")
    r = await env.client.post(
        f"/api/v1/tasks/{skipped['id']}/nack",
        json={"reason": "no"},
        headers={**env.h, "x-oasst-user": "local:u9"},
    )
    assert r.status_code == 204, r.text
    error(
        await env.post("/api/v1/tasks/", {"type": "rank_assistant_replies", "user": user(9)}),
        503,
        1006,
    )
    r = await env.client.get(f"/api/v1/messages/{tree_id}/tree/state", headers=env.h)
    assert r.json()["state"] == "ranking"


# ---------------------------------------------------------------- consistency
async def test_retried_interaction_records_once_and_answers_the_same(env: Env):
    task = await env.task(U, "initial_prompt")
    await env.ack(task, "f1")
    await env.ack(task, "f1")  # a retried ack is answered the same
    body = {
        "type": "text_reply_to_message",
        "message_id": "f1",
        "user_message_id": "m1",
        "text": "Tell me about bread.",
        "user": U,
    }
    first = await env.post("/api/v1/tasks/interaction", body)
    label = await env.label_task(user(2))
    events = f"/api/v1/trees/{label['message_id']}/events"
    before = (await env.client.get(events, headers=env.h)).json()
    second = await env.post("/api/v1/tasks/interaction", body)
    assert first.status_code == second.status_code == 200 and first.json() == second.json()
    assert (await env.client.get(events, headers=env.h)).json() == before
    assert [e["type"] for e in before] == ["TreeStarted"] and before[0]["position"] > 0
    # a retried label submission: one LabelsSubmitted event
    await env.ack(label, "l1")
    labels = {
        "type": "text_labels",
        "message_id": label["message_id"],
        "task_id": label["id"],
        "user": user(2),
        "labels": {n: "0" for n in label["valid_labels"]},
    }
    a = await env.post("/api/v1/tasks/interaction", labels)
    b = await env.post("/api/v1/tasks/interaction", labels)
    assert a.json() == b.json() == {"type": "task_done", "id": label["id"]}
    kinds = [e["type"] for e in (await env.client.get(events, headers=env.h)).json()]
    assert kinds.count("LabelsSubmitted") == 1


async def test_messages_moderation_and_history(env: Env):
    await env.prompt(U, "Original text", "p1")
    tree_id = (await env.label_task(user(2)))["message_id"]
    m, c, t = f"/api/v1/messages/{tree_id}", env.client, env.trusted
    got = (await c.get(m, headers={**env.h, "x-oasst-user": "local:u1"})).json()
    assert got["text"] == "Original text" and got["user_is_author"] is True
    r = await env.post(m + "/emoji", {"user": user(2), "emoji": "+1", "op": "add"})
    assert (
        r.status_code == 202
        and r.json()["emojis"] == {"+1": 1}
        and r.json()["user_emojis"] == ["+1"]
    )
    r = await env.post(m + "/edit", {"user": U, "new_content": "Edited text"}, headers=t)
    assert r.status_code == 204, r.text
    hist = (await c.get(m + "/history", headers=t)).json()
    assert [(h["revision"], h["text"]) for h in hist] == [(0, "Original text"), (1, "Edited text")]
    assert (await c.get(m + "/conversation", headers=env.h)).json()["messages"][0][
        "text"
    ] == "Edited text"
    assert (await c.delete(m, headers=t)).status_code == 204
    assert (await c.get(m, headers=env.h)).json()["deleted"] is True
    assert (await c.get(m + "/tree", headers=env.h)).json()["messages"] == []
    assert (await c.put(m + "/undelete", headers=t)).status_code == 204
    assert (await c.get(m, headers=env.h)).json()["deleted"] is False
    # the tree as it was before the edit, by version
    tree = (await c.get(f"/api/v1/trees/{tree_id}?as_of=1", headers=env.h)).json()
    assert tree["messages"][0]["text"] == "Original text"
    error(await c.get(f"/api/v1/trees/{tree_id}?as_of=yesterday", headers=env.h), 422, 422)


async def test_openapi_lists_every_route_with_schemas(env: Env):
    doc = (await env.client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/api/v1/tasks/",
        "/api/v1/tasks/interaction",
        "/api/v1/tasks/{task_id}/ack",
        "/api/v1/messages/{message_id}/tree/state",
        "/api/v1/trees/{tree_id}/events",
        "/api/v1/messages/",
        "/api/v1/messages/cursor",
        "/api/v1/frontend_messages/{frontend_id}/descendants",
        "/api/v1/users/cursor",
        "/api/v1/users/by_username",
        "/api/v1/users/by_display_name",
        "/api/v1/users/{user_id}",
        "/api/v1/users/{user_id}/messages/cursor",
        "/api/v1/frontend_users/{auth_method}/{username}/messages/cursor",
    ):
        assert path in doc["paths"], path
    assert set(doc["paths"]["/api/v1/users/{user_id}"]) == {"get", "put", "delete"}
    operations = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(operations) == len(set(operations))
    schemas = doc["components"]["schemas"]
    for name in (
        "TaskRequest",
        "TextReplyToMessage",
        "MessageRanking",
        "TextLabels",
        "LabelInitialPromptTask",
        "RankAssistantRepliesTask",
        "Error",
        "FrontEndUser",
        "MessagePage",
        "FrontEndUserPage",
    ):
        assert name in schemas, name
    assert "/api/v1/tasks/" in (await env.client.get("/docs")).text


# ---------------------------------------------------------------- no 500s
BAD_BODIES: list[Any] = [
    None,
    [],
    "text",
    0,
    {},
    {"user": 5},
    {"type": None},
    {"type": "text_labels", "user": U, "message_id": "x", "labels": []},
    {"type": "message_ranking", "user": U, "message_id": "x", "ranking": ["a"]},
    {"user": U, "emoji": 7, "new_content": None, "message_id": {}},
]


async def test_no_input_yields_a_500(env: Env):
    await env.prompt(U, "A prompt for fuzzing", "p1")
    real = (await env.label_task(user(2)))["message_id"]
    ids = ["x", "00000000-0000-0000-0000-000000000000", real]
    app_routes = [(e.method, e.path) for e in env.client._transport.app.state.api.endpoints]
    checked = 0
    for method, path in app_routes:
        for ident in ids:
            url = (
                path.replace("{message_id}", ident)
                .replace("{task_id}", ident)
                .replace("{tree_id}", ident)
                .replace("{auth_method}", "local")
                .replace("{username}", ident)
                .replace("{frontend_id}", ident)
                .replace("{user_id}", ident)
            )
            for body in BAD_BODIES if method in ("POST", "PUT") else [None]:
                for query in (
                    "",
                    "?as_of=-1&halt=x&lang=&include_spam=2",
                    (
                        "?max_count=0&before=x%24y&after=2024-13-01&start_date=never"
                        "&api_client_id=nope&gt_id=1&sort_key=age&enabled=2"
                        "&search_query=%25&desc=maybe"
                    ),
                ):
                    for headers in (env.trusted, env.h):  # scoping differs for untrusted
                        r = await env.client.request(
                            method, url + query, json=body, headers=headers
                        )
                        checked += 1
                        assert r.status_code < 500, (method, url, body, r.text)
                        if r.status_code >= 400:
                            # a 422 also carries FastAPI's ``detail`` list, as OA's do
                            extra = {"detail"} if r.status_code == 422 else set()
                            assert set(r.json()) == {"message", "error_code", *extra}, r.text
    assert checked > 600


async def test_concurrent_reviews_decide_once_and_count_each_user_once(env: Env):
    import asyncio
    from datetime import timedelta

    await env.prompt(U, "Many reviewers at once", "p1")
    people = [user(i) for i in range(2, 12)]
    tasks = []
    engine = env.service.app  # type: ignore[attr-defined]
    start, span = engine.now(), engine.config.recent_tasks_span_sec
    for i, who in enumerate(people):
        # Open label tasks reserve the message (two cover its two reviews), so each hand-out
        # comes after the earlier reservations lapsed: ten users hold a task on it at once.
        engine.clock = lambda moment=start + timedelta(seconds=i * (span + 1)): moment
        task = await env.label_task(who)
        await env.ack(task, f"l-{who['id']}")
        tasks.append(task)
    tree_id = tasks[0]["message_id"]

    def body(who: dict, task: dict) -> dict:
        return {
            "type": "text_labels",
            "message_id": tree_id,
            "task_id": task["id"],
            "user": who,
            "labels": {n: 0 for n in task["valid_labels"]},
        }

    # every reviewer at once, and the first two each send their answer twice
    sends = [body(w, t) for w, t in zip(people, tasks)] + [
        body(people[0], tasks[0]),
        body(people[1], tasks[1]),
    ]
    answers = await asyncio.gather(*(env.post("/api/v1/tasks/interaction", b) for b in sends))
    ok = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    assert all(r.json()["error_code"] == 2056 for r in refused), [r.text for r in refused]
    events = (await env.client.get(f"/api/v1/trees/{tree_id}/events", headers=env.h)).json()
    reviews = [e for e in events if e["type"] == "LabelsSubmitted"]
    assert len(reviews) == SMALL.num_reviews_initial_prompt  # exactly the configured number
    assert len({e["user_id"] for e in reviews}) == len(reviews)  # nobody counted twice
    assert [e["type"] for e in events].count("ReviewDecided") == 1
    reviewers = {e["user_id"] for e in reviews}
    assert len(ok) >= len(reviews) and len(ok) <= len(reviews) + 2  # retries answered the same
    msg = (await env.client.get(f"/api/v1/messages/{tree_id}", headers=env.h)).json()
    assert msg["review_count"] == len(reviewers) and msg["review_result"] is True


async def test_open_label_tasks_reserve_the_message_for_their_holders(env: Env):
    """Beyond OA: two open label tasks cover a prompt's two reviews, so a third user is
    told there is no such task, until one of the holders skips."""
    await env.prompt(U, "Only two reviewers at a time", "p1")
    held = [await env.label_task(who) for who in (user(2), user(3))]
    assert held[0]["message_id"] == held[1]["message_id"]
    error(
        await env.post("/api/v1/tasks/", {"type": "label_initial_prompt", "user": user(4)}),
        503,
        1006,
    )
    r = await env.post("/api/v1/tasks/availability", user(4))
    assert r.status_code == 200 and r.json()["label_initial_prompt"] == 0, r.text
    r = await env.post(
        f"/api/v1/tasks/{held[1]['id']}/nack",
        {"reason": "not now"},
        headers={**env.h, "x-oasst-user": "local:u3"},
    )
    assert r.status_code == 204, r.text
    assert (await env.label_task(user(4)))["message_id"] == held[0]["message_id"]
