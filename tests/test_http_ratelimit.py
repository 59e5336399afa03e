"""OA's rate limits on POST /tasks/ (reference §6.2): the sliding window itself on a fake
clock, its configuration, and the HTTP answers (429, Retry-After, nothing recorded)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.http.app import create_app
from api.http.ratelimit import RateLimits, Rule, SlidingWindowLimiter
from domain.model.errors import ConfigError
from tests.http_helpers import ROOT, SMALL, WEB_KEY, in_process, new_client_key, user


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- the limiter
def test_window_admits_n_then_refuses_until_the_oldest_leaves():
    clock = Clock()
    limiter = SlidingWindowLimiter(clock)
    rule = Rule(3, 60)
    for _step in range(3):
        assert limiter.admit([("k", rule)]) == 0
        clock.now += 10  # admitted at 1000, 1010, 1020
    assert limiter.admit([("k", rule)]) == pytest.approx(30)  # now 1030; 1000 leaves at 1060
    clock.now = 1059.5
    assert limiter.admit([("k", rule)]) == pytest.approx(0.5)
    clock.now = 1060
    assert limiter.admit([("k", rule)]) == 0  # 1000 has left; 1010, 1020, 1060 inside
    assert limiter.admit([("k", rule)]) == pytest.approx(10)
    assert limiter.admit([("other", rule)]) == 0  # keys are independent


def test_refused_requests_are_not_recorded():
    clock = Clock()
    limiter = SlidingWindowLimiter(clock)
    rule = Rule(2, 60)
    limiter.admit([("k", rule)])
    limiter.admit([("k", rule)])
    for _ in range(50):  # hammering while refused does not push the next admission back
        clock.now += 1
        assert limiter.admit([("k", rule)]) > 0
    clock.now = 1060
    assert limiter.admit([("k", rule)]) == 0


def test_rules_of_one_request_are_recorded_together_or_not_at_all():
    clock = Clock()
    limiter = SlidingWindowLimiter(clock)
    wide, narrow = Rule(10, 60), Rule(1, 60)
    assert limiter.admit([("user", wide), ("reply", narrow)]) == 0
    assert limiter.admit([("user", wide), ("reply", narrow)]) == pytest.approx(60)
    # the refusal above did not use up the wide rule: 9 more fit
    assert all(limiter.admit([("user", wide)]) == 0 for _ in range(9))
    assert limiter.admit([("user", wide)]) > 0


def test_concurrent_threads_get_exactly_the_allowance():
    limiter = SlidingWindowLimiter(Clock())
    rule = Rule(100, 60)
    admitted = []

    def hammer() -> None:
        mine = sum(1 for _ in range(60) if limiter.admit([("k", rule)]) == 0)
        admitted.append(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 100


def test_emptied_keys_are_swept():
    clock = Clock()
    limiter = SlidingWindowLimiter(clock)
    limiter.SWEEP_EVERY = 10
    for i in range(9):
        limiter.admit([(i, Rule(1, 5))])
    assert len(limiter) == 9
    clock.now += 6
    limiter.admit([("last", Rule(1, 5))])  # the 10th admission sweeps
    assert len(limiter) == 1


def test_configuration_from_the_environment():
    default = RateLimits.from_env({})
    assert default.enabled and default.user_tasks == Rule(30, 240)
    assert (default.assistant_reply, default.prompter_reply, default.client) == (
        Rule(4, 120),
        Rule(8, 120),
        Rule(10_000, 60),
    )
    assert not RateLimits.from_env({"DATAENGINE_RATE_LIMIT": "false"}).enabled
    custom = RateLimits.from_env(
        {"DATAENGINE_RATE_LIMIT_USER_TASKS": "5/10", "DATAENGINE_RATE_LIMIT_CLIENT": "7/1.5"}
    )
    assert custom.user_tasks == Rule(5, 10) and custom.client == Rule(7, 1.5)
    for bad in (
        {"DATAENGINE_RATE_LIMIT": "maybe"},
        {"DATAENGINE_RATE_LIMIT_USER_TASKS": "5"},
        {"DATAENGINE_RATE_LIMIT_USER_TASKS": "0/10"},
        {"DATAENGINE_RATE_LIMIT_PROMPTER_REPLY": "3/-1"},
        {"DATAENGINE_RATE_LIMIT_CLIENT": "x/y"},
    ):
        with pytest.raises(ConfigError):
            RateLimits.from_env(bad)


# ---------------------------------------------------------------- over HTTP
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Limited:
    def __init__(self, client: httpx.AsyncClient, key: str, clock: Clock):
        self.client, self.clock = client, clock
        self.h = {"X-API-Key": key}

    async def request(self, kind: str, who: dict | None = None, **headers: str) -> httpx.Response:
        body: dict[str, Any] = {"type": kind}
        if who is not None:
            body["user"] = who
        return await self.client.post("/api/v1/tasks/", json=body, headers={**self.h, **headers})

    @property
    def service(self) -> Any:
        return self.client._transport.app.state.service  # type: ignore[attr-defined]


@pytest.fixture
async def limited(tmp_path, monkeypatch) -> AsyncIterator[Limited]:
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    clock = Clock()
    limits = RateLimits(
        user_tasks=Rule(3, 60),
        assistant_reply=Rule(1, 120),
        prompter_reply=Rule(2, 120),
        client=Rule(2, 60),
        clock=clock,
    )
    app = create_app(
        tmp_path,
        SMALL,
        root_tokens=frozenset({ROOT}),
        web_api_key=WEB_KEY,
        seed=1,
        rate_limits=limits,
    )
    async with in_process(app) as client:
        yield Limited(client, await new_client_key(client), clock)


def too_many(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    body = r.json()
    seconds = int(r.headers["retry-after"])
    assert body == {
        "error_code": 429,
        "message": f"Too Many Requests. Retry After {seconds} seconds.",
    }
    return seconds


@pytest.mark.anyio
async def test_per_user_limit_answers_429_and_records_nothing(limited: Limited):
    a, b = user(1), user(2)
    for _ in range(3):
        assert (await limited.request("initial_prompt", a)).status_code == 200
    events = (await limited.client.get("/health")).json()["log_position"]
    assert too_many(await limited.request("initial_prompt", a)) == 60
    assert too_many(await limited.request("random", a)) == 60
    assert (await limited.client.get("/health")).json()["log_position"] == events  # nothing
    assert (await limited.request("initial_prompt", b)).status_code == 200  # others unaffected
    # the same user name through another client is another user
    other = {"X-API-Key": await new_client_key(limited.client)}
    r = await limited.client.post(
        "/api/v1/tasks/", json={"type": "initial_prompt", "user": a}, headers=other
    )
    assert r.status_code == 200, r.text
    limited.clock.now += 45
    assert too_many(await limited.request("initial_prompt", a)) == 15
    limited.clock.now += 15
    assert (await limited.request("initial_prompt", a)).status_code == 200


@pytest.mark.anyio
async def test_a_refused_first_request_creates_no_user(limited: Limited):
    service = limited.service
    client_id = service.app.authenticate(limited.h["X-API-Key"]).id
    rule = service.task_limits.limits.user_tasks
    for _ in range(rule.times):  # the newcomer's allowance used up (say, by a lost client)
        service.task_limits.limiter.admit([(("user", (client_id, "local", "u9")), rule)])
    too_many(await limited.request("initial_prompt", user(9)))
    r = await limited.client.get("/api/v1/frontend_users/local/u9", headers=limited.h)
    assert r.status_code == 404 and r.json()["error_code"] == 4002, r.text


@pytest.mark.anyio
async def test_explicit_reply_requests_have_their_own_limits(limited: Limited):
    a = user(1)
    # no reply task exists: answered 503 (1006), yet counted, as in OA (the limit comes first)
    r = await limited.request("assistant_reply", a)
    assert r.status_code == 503 and r.json()["error_code"] == 1006, r.text
    assert too_many(await limited.request("assistant_reply", a)) == 120
    # prompter_reply has its own allowance (2); each also counts in the user's (3)
    assert (await limited.request("prompter_reply", a)).status_code == 503
    assert (await limited.request("random", a)).status_code == 200  # 3 of 3 used
    assert too_many(await limited.request("random", a)) == 60
    limited.clock.now += 60
    assert (await limited.request("prompter_reply", a)).status_code == 503
    assert too_many(await limited.request("prompter_reply", a)) == 60  # 2 of 2 in 120 s
    # the header user counts like the body user
    b = user(2)
    for _ in range(3):
        r = await limited.request("initial_prompt", None, **{"x-oasst-user": "local:u2"})
        assert r.status_code == 200, r.text
    too_many(await limited.request("initial_prompt", b))


@pytest.mark.anyio
async def test_requests_without_a_user_count_against_the_client(limited: Limited):
    for _ in range(2):
        r = await limited.request("random")
        assert r.status_code == 400 and r.json()["error_code"] == 4000, r.text
    too_many(await limited.request("random"))
    assert (await limited.request("random", user(1))).status_code == 200  # users: their own


@pytest.mark.anyio
async def test_disabled_limits_never_refuse(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    monkeypatch.setenv("DATAENGINE_RATE_LIMIT", "false")
    monkeypatch.setenv("DATAENGINE_RATE_LIMIT_CLIENT", "1/60")
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), seed=1)
    async with in_process(app) as client:
        h = {"X-API-Key": await new_client_key(client)}
        for _ in range(5):
            r = await client.post("/api/v1/tasks/", json={"type": "random"}, headers=h)
            assert r.status_code == 400, r.text


@pytest.mark.anyio
async def test_openapi_documents_the_429(limited: Limited):
    doc = (await limited.client.get("/openapi.json")).json()
    answer = doc["paths"]["/api/v1/tasks/"]["post"]["responses"]["429"]
    assert "Retry-After" in answer["headers"]
