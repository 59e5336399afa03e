"""End to end through HTTP only: simulated users drive trees to ready_for_export."""

from __future__ import annotations

import time

import httpx
import pytest

from api.http.app import create_app
from api.http.ratelimit import RateLimits
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Crowd, in_process, new_client_key, server

# Both stores: the server on SQLite, and on a fresh PostgreSQL schema (tests/pg_fixture.py).
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("each_store")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_ten_users_drive_twenty_trees_to_export(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")  # no fsync per commit in tests
    app = create_app(
        tmp_path,
        SMALL,
        root_tokens=frozenset({ROOT}),
        seed=7,
        rate_limits=RateLimits(enabled=False),
    )  # ~100 tasks per user
    async with in_process(app) as client:
        crowd = Crowd(client, await new_client_key(client), users=10, trees=20, seed=7)
        started = time.perf_counter()
        ready = await crowd.run(max_cycles=3000)
        elapsed = time.perf_counter() - started
        print(
            f"{crowd.cycles} cycles in {elapsed:.1f}s, types {crowd.types}, "
            f"{len(crowd.errors)} refused answers"
        )
        assert ready >= 20
        for kind in (
            "initial_prompt",
            "assistant_reply",
            "label_initial_prompt",
            "label_assistant_reply",
            "rank_assistant_replies",
        ):
            assert crowd.types.get(kind, 0) > 0, kind
        # every tree a task named is visible through the messages API, in a consistent state
        states = {}
        for tree_id in crowd.tree_ids:
            r = await client.get(f"/api/v1/messages/{tree_id}/tree/state", headers=crowd.headers)
            assert r.status_code == 200, r.text
            states[tree_id] = r.json()["state"]
        assert sum(1 for s in states.values() if s == "ready_for_export") >= 20
        # a ready tree's accepted siblings are ranked (a tree whose replies were rejected
        # until at most one per parent was left has nothing to rank and is ready unranked)
        ranked = 0
        for tree_id in (t for t, s in states.items() if s == "ready_for_export"):
            r = await client.get(f"/api/v1/messages/{tree_id}/tree", headers=crowd.headers)
            messages = r.json()["messages"]
            siblings: dict[str, int] = {}
            for m in messages:
                if m["review_result"] and m["parent_id"]:
                    siblings[m["parent_id"]] = siblings.get(m["parent_id"], 0) + 1
            if max(siblings.values(), default=0) >= 2:
                assert any(m["rank"] is not None for m in messages), messages
                ranked += 1
        assert ranked > 0
        # statistics over HTTP: every participant scored, rankers' agreement measured
        r = await client.get("/api/v1/leaderboards/total", headers=crowd.headers)
        assert r.status_code == 200, r.text
        board = r.json()["leaderboard"]
        assert len(board) == 10 and [u["rank"] for u in board] == list(range(1, 11))
        assert all(u["leader_score"] > 0 for u in board)
        r = await client.get(f"/api/v1/users/{board[0]['user_id']}/stats", headers=crowd.headers)
        assert r.status_code == 200 and r.json()["total"]["rank"] == 1, r.text
        r = await client.get("/api/v1/stats/agreement", headers=crowd.headers)
        assert r.status_code == 200 and r.json()["rankers"], r.text
        r = await client.get("/api/v1/models/leaderboard", headers=crowd.headers)
        assert r.status_code == 200 and isinstance(r.json(), list), r.text
        r = await client.get("/api/v1/leaderboards/year", headers=crowd.headers)
        assert r.status_code == 422 and "time frame" in r.json()["message"], r.text


@pytest.mark.slow
async def test_same_crowd_against_a_real_uvicorn_process(tmp_path):
    with server(tmp_path, DATAENGINE_SYNCHRONOUS="NORMAL") as (url, proc):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            crowd = Crowd(client, await new_client_key(client), users=10, trees=20, seed=3)
            ready = await crowd.run(max_cycles=3000)
            assert ready >= 20, (crowd.cycles, crowd.types, crowd.errors[:5])
            # the trusted official client from DATAENGINE_WEB_API_KEY can moderate
            tree_id = next(iter(crowd.tree_ids))
            r = await client.get(
                f"/api/v1/messages/{tree_id}/history", headers={"X-API-Key": WEB_KEY}
            )
            assert r.status_code == 200 and r.json()[0]["revision"] == 0, r.text
    # uvicorn re-raises SIGTERM after a graceful shutdown; the lifespan must have completed
    assert "Application shutdown complete" in proc.log_path.read_text()
