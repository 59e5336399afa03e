"""Nothing is stored on refusal: every refused request leaves the log byte-identical (its
event count and its audit digest at the head), even when it names a user never seen
before; re-answering a finished label or ranking task with other values is refused (409),
with the same values it gets the earlier answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from api.http.app import create_app
from tests import log_helpers
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, in_process, new_client_key

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def person(name: str) -> dict[str, str]:
    return {"id": name, "display_name": name.upper(), "auth_method": "local"}


class Log:
    def __init__(self, env: Env, folder: Path):
        self.env, self.folder = env, folder

    async def state(self) -> tuple[int, str]:
        count = log_helpers.read(self.folder, "SELECT count(*) FROM stored_events")[0][0]
        r = await self.env.get("/api/v1/audit/digest")
        assert r.status_code == 200, r.text
        return count, r.json()["digest"]


@pytest.fixture
async def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    monkeypatch.setenv("DATAENGINE_RATE_LIMIT", "false")
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=5)
    async with in_process(app) as client:
        a = Env(client, await new_client_key(client))
        b = Env(client, await new_client_key(client))
        await a.prompt(person("a1"), "the prompt under review", "pa")
        message = (await a.get("/api/v1/frontend_messages/mpa")).json()["id"]
        yield a, b, message, Log(a, tmp_path)


def labels(message: str, who: str, values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "text_labels", "message_id": message, "labels": values, "user": person(who)}


async def test_every_refusal_leaves_the_log_unchanged(setup: Any) -> None:
    a, b, message, log = setup
    unknown = "00000000-0000-4000-8000-000000000000"
    # a prompt task acknowledged by u-empty, so an empty answer reaches the domain's rule
    task = await a.task(person("u-empty"), "initial_prompt")
    await a.ack(task, "f-empty")
    r = await a.post("/api/v1/frontend_users/", person("gone"))
    gone = r.json()["user_id"]
    assert (await a.client.delete(f"/api/v1/users/{gone}", headers=a.trusted)).status_code == 204
    # (client, method, path, body, extra headers): each names a user never seen before
    refusals: list[tuple[Env, str, str, Any, dict[str, str]]] = [
        (a, "POST", "/api/v1/text_labels/", labels(message, "n1", {"spam": 5}), {}),
        (a, "POST", "/api/v1/text_labels/", labels(message, "n2", {"nonsense": 1}), {}),
        (a, "POST", "/api/v1/text_labels/", labels(unknown, "n3", {"spam": 1}), {}),
        (a, "POST", "/api/v1/text_labels/", labels(message, "a1", {"spam": 1}), {}),
        (b, "POST", "/api/v1/text_labels/", labels(message, "n4", {"spam": 1}), {}),
        (
            a,
            "POST",
            f"/api/v1/messages/{message}/emoji",
            {"op": "add", "emoji": "no-such-emoji", "user": person("n5")},
            {},
        ),
        (
            a,
            "POST",
            f"/api/v1/tasks/{unknown}/ack",
            {"message_id": "x"},
            {"x-oasst-user": "local:n6"},
        ),
        (a, "POST", f"/api/v1/tasks/{unknown}/nack", {}, {"x-oasst-user": "local:n7"}),
        (
            a,
            "POST",
            "/api/v1/tasks/interaction",
            {
                "type": "text_reply_to_message",
                "message_id": "never-acked",
                "user_message_id": "m-n8",
                "text": "hello",
                "user": person("n8"),
            },
            {},
        ),
        (
            a,
            "POST",
            "/api/v1/tasks/interaction",
            {
                "type": "text_reply_to_message",
                "message_id": "f-empty",
                "user_message_id": "m-empty",
                "text": "  ",
                "user": person("u-empty"),
            },
            {},
        ),
        (a, "POST", "/api/v1/tasks/", {"type": "rank_assistant_replies", "user": person("n9")}, {}),
        (a, "POST", "/api/v1/tasks/", {"type": "no_such_type", "user": person("n10")}, {}),
        (a, "POST", "/api/v1/tasks/", {"type": "random", "user": person("gone")}, {}),
        (a, "POST", "/api/v1/text_labels/", b"{not json", {"Content-Type": "application/json"}),
        (a, "POST", "/api/v1/text_labels/", b"labels=1", {"Content-Type": "text/plain"}),
        (a, "POST", "/api/v1/text_labels/", b"x" * (2 << 20), {}),
        (a, "GET", f"/api/v1/trees/{unknown}", None, {}),
        (
            a,
            "POST",
            "/api/v1/tasks/",
            {"type": "random", "user": person("n11")},
            {"X-API-Key": "no"},
        ),
    ]
    seen: set[tuple[int, int]] = set()
    for env, method, path, body, extra in refusals:
        before = await log.state()
        headers = {**env.h, **extra}
        content = body if isinstance(body, bytes) else None
        json = None if isinstance(body, bytes) else body
        r = await env.client.request(method, path, json=json, content=content, headers=headers)
        assert r.status_code >= 400, (path, body if not isinstance(body, bytes) else "", r.text)
        found = r.json()
        assert isinstance(found["message"], str), found
        seen.add((r.status_code, found["error_code"]))
        assert await log.state() == before, (path, found)
    # the statuses and error codes this walk reached: every one recorded nothing
    assert seen == {
        (400, 2055),  # label value out of range
        (400, 2051),  # invalid label
        (404, 2001),  # message not found
        (400, 2053),  # self free label
        (403, 2),  # another client's message; no API key
        (400, 5000),  # unsupported emoji
        (404, 2100),  # task not found
        (404, 4002),  # the header's user is unknown
        (400, 1010),  # empty text
        (503, 1006),  # requested task type not available
        (422, 422),  # invalid body, unknown task type
        (413, 422),  # body too large
        (415, 422),  # not application/json
        (403, 4001),  # deleted user
        (404, 2006),  # tree not found
    }


async def test_a_finished_task_answered_again(setup: Any) -> None:
    a, _b, message, log = setup
    task = await a.task(person("r1"), "label_initial_prompt")
    await a.ack(task, "f-r1")
    answer = {
        "type": "text_labels",
        "message_id": message,
        "task_id": task["id"],
        "labels": {n: 0 for n in task["valid_labels"]},
        "user": person("r1"),
    }
    r = await a.post("/api/v1/tasks/interaction", answer)
    assert r.status_code == 200, r.text
    before = await log.state()
    again = await a.post("/api/v1/tasks/interaction", answer)
    assert again.status_code == 200 and again.json() == r.json()
    other = {**answer, "labels": {n: 1 for n in task["valid_labels"]}}
    refused = await a.post("/api/v1/tasks/interaction", other)
    assert refused.status_code == 409, refused.text
    assert await log.state() == before
