"""Over HTTP: an ack or nack without an ``x-oasst-user`` header finds the task's user in
the log's task index, so it works while no read model can be asked; another client's task
stays not found."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest

from api.http.app import create_app
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, error, in_process, new_client_key, user

pytestmark = pytest.mark.anyio


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


def _no_read_model(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a write asked the read model")


async def test_ack_and_nack_without_a_user_header_never_read_the_read_model(env: Env, monkeypatch):
    first = await env.task(user(1), "initial_prompt")
    second = await env.task(user(1), "initial_prompt")
    other_key = await new_client_key(env.client)
    monkeypatch.setattr(env.service, "reader", _no_read_model)  # type: ignore[attr-defined]
    monkeypatch.setattr(env.service.reads, "run", _no_read_model)  # type: ignore[attr-defined]
    monkeypatch.setattr(env.service.reads, "rows", _no_read_model)  # type: ignore[attr-defined]
    await env.ack(first, "f1")
    r = await env.post(f"/api/v1/tasks/{second['id']}/nack", {"reason": "not now"})
    assert r.status_code == 204, r.text
    # another client's task: not found, as if it did not exist
    r = await env.post(
        f"/api/v1/tasks/{first['id']}/ack", {"message_id": "f1"}, headers={"X-API-Key": other_key}
    )
    error(r, 404, 2100)
    app = env.service.app  # type: ignore[attr-defined]
    tasks = app.find_user(app.task_owner(UUID(first["id"]))).tasks
    assert tasks[UUID(first["id"])].frontend_message_id == "f1"
    assert tasks[UUID(second["id"])].skipped
