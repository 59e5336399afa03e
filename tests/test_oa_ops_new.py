"""OA's admin, statistics and remaining operations (issue 16), by what they do: purges are
events that every read hides and that cannot be undone by an undelete, flagged messages
move through the queue, /metrics counts what happened, errors answer as OA's do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from api.http.app import create_app
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, error, in_process

pytestmark = pytest.mark.anyio


def who(i: int) -> dict[str, str]:
    return {"id": f"u{i}", "display_name": f"User {i}", "auth_method": "local"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: Any) -> AsyncIterator[tuple[Env, dict[str, str]]]:
    """A growing tree: a prompt by u1 (accepted by u2, u3) and an assistant reply by u2."""
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    monkeypatch.delenv("DATAENGINE_TOXICITY_MODEL", raising=False)
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=1)
    async with in_process(app) as client:
        env = Env(client, WEB_KEY)
        await env.prompt(who(1), "What is the capital of France?", "p1")
        root = await env.accept_prompt([who(2), who(3)])
        await env.reply(who(2), "Paris is the capital of France.", "r1")
        reply = (await env.get(f"/api/v1/messages/{root}/children")).json()[0]["id"]
        u2 = (await env.get("/api/v1/frontend_users/local/u2")).json()["user_id"]
        yield env, {"root": root, "reply": reply, "u2": u2}


async def _head(env: Env) -> int:
    return (await env.get("/health")).json()["log_position"]


async def test_purge_preview_records_nothing_and_a_purge_hides_the_text(world):
    env, ids = world
    before = await _head(env)
    r = await env.post(f"/api/v1/admin/purge_user/{ids['u2']}")
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["preview"] is True and await _head(env) == before
    assert preview["before"]["all"] == 2 and preview["after"]["all"] == 1
    assert (await env.get(f"/api/v1/messages/{ids['reply']}")).json()["text"].startswith("Paris")

    r = await env.post(f"/api/v1/admin/purge_user/{ids['u2']}", params={"preview": "false"})
    assert r.status_code == 200, r.text
    assert r.json()["after"] == preview["after"]  # the preview foretold it
    assert await _head(env) > before
    gone = (await env.get(f"/api/v1/messages/{ids['reply']}")).json()
    assert gone["deleted"] is True and gone["text"] == ""
    tree = await env.get(f"/api/v1/messages/{ids['root']}/tree", include_deleted="true")
    assert [m["text"] for m in tree.json()["messages"] if m["id"] == ids["reply"]] == [""]
    # nothing that reads the log for people shows the text: history, events, a past view
    events = (await env.get(f"/api/v1/trees/{ids['root']}/events")).json()
    purge = next(e["version"] for e in events if e["type"] == "MessagesPurged")
    for path, params in (
        (f"/api/v1/messages/{ids['reply']}/history", {}),
        (f"/api/v1/trees/{ids['root']}/events", {}),
        (f"/api/v1/trees/{ids['root']}", {"as_of": str(purge - 1)}),
    ):
        r = await env.get(path, **params)
        assert r.status_code == 200 and "Paris" not in r.text, (path, r.text)
    before_purge = await env.get(f"/api/v1/trees/{ids['root']}", as_of=str(purge - 1))
    assert [m["deleted"] for m in before_purge.json()["messages"]] == [False, False]
    # a purge is not a deletion to take back
    r = await env.client.put(f"/api/v1/messages/{ids['reply']}/undelete", headers=env.h)
    error(r, 400, 2023)
    # ban: the user is disabled
    user = (await env.get(f"/api/v1/users/{ids['u2']}")).json()
    assert user["enabled"] is False
    # the system statistics count the purged message nowhere
    stats = (await env.get("/api/v1/stats/")).json()
    assert stats["all"] == 1 and stats["deleted"] == 0 and stats["message_trees"] == 1


async def test_purge_messages_keeps_prompts_unless_asked(world):
    env, ids = world
    u1 = (await env.get("/api/v1/frontend_users/local/u1")).json()["user_id"]
    path = f"/api/v1/admin/purge_user/{u1}/messages"
    r = await env.post(path, params={"preview": "false"})
    assert r.status_code == 200 and r.json()["after"]["all"] == 2  # the prompt stays
    r = await env.post(path, params={"preview": "true", "purge_initial_prompts": "true"})
    assert r.json()["after"]["all"] == 0  # the prompt and the reply under it
    r = await env.post(
        path, params={"min_date": "2999-01-01T00:00:00", "purge_initial_prompts": "1"}
    )
    assert r.json()["after"]["all"] == 2  # nothing written in that range
    error(await env.post(path, params={"preview": "maybe"}), 422, 422)


async def test_flagged_messages_queue(world):
    env, ids = world
    report = {
        "type": "text_labels",
        "message_id": ids["reply"],
        "labels": {"spam": 1},
        "user": who(4),
        "is_report": True,
    }
    assert (await env.post("/api/v1/text_labels/", report)).status_code == 204
    queue = (await env.get("/api/v1/admin/flagged_messages", max_count="10")).json()
    assert [(f["message_id"], f["processed"]) for f in queue] == [(ids["reply"], False)]
    page = (await env.get("/api/v1/admin/flagged_messages/cursor", max_count="1")).json()
    assert [f["message_id"] for f in page["items"]] == [ids["reply"]] and page["next"] is None
    r = await env.post(f"/api/v1/admin/admin/flagged_messages/{ids['reply']}/processed")
    assert r.status_code == 200 and r.json()["processed"] is True, r.text
    assert (await env.get("/api/v1/admin/flagged_messages", max_count="10")).json() == []
    error(await env.post(f"/api/v1/admin/flagged_messages/{ids['root']}/processed"), 404, 2001)
    error(await env.get("/api/v1/admin/flagged_messages"), 422, 422)
    untrusted = {"X-API-Key": "nope"}
    error(await env.get("/api/v1/admin/flagged_messages", untrusted, max_count="1"), 403, 2)


async def test_metrics_count_requests_tasks_and_trees(world):
    env, _ = world
    r = await env.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert (
        'dataengine_http_requests_total{method="POST",route="/api/v1/tasks/",status="200"}' in text
    )
    assert 'dataengine_http_request_duration_seconds_bucket{le="0.005",method="POST"' in text
    assert 'dataengine_tasks_handed_out_total{type="initial_prompt"} 1.0' in text
    assert 'dataengine_trees{state="growing"} 1.0' in text
    assert "dataengine_projection_lag_events" in text
    head = await _head(env)
    assert f"dataengine_events_appended_total {float(head)}" in text


async def test_errors_answer_as_oa(world):
    env, _ = world
    r = await env.get("/api/v1/hf/text_toxicity", msg="you are nice")
    assert error(r, 400, 3001).startswith("Response Error Detoxify HuggingFace")
    r = await env.get("/api/v1/hf/text_toxicity")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "msg"]
    error(await env.post("/api/v1/tasks/close", {"message_id": "unknown"}), 404, 2100)
    task = await env.task(who(5), "initial_prompt")
    await env.ack(task, "closing")
    error(await env.post("/api/v1/tasks/close", {"message_id": "closing"}), 400, 2106)
    r = await env.post("/api/v1/tasks/close", {})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
    error(await env.client.get("/api/v1/auth/check"), 403, 2)


async def test_statistics_in_oa_shapes(world):
    env, ids = world
    counts = (await env.get("/api/v1/stats/tree_manager/message_counts")).json()
    assert counts == [
        {
            **counts[0],
            "message_tree_id": ids["root"],
            "state": "growing",
            "count": 2,
            "message_count": 2,
            "depth": 1,
        }
    ]
    assert counts[0]["oldest"] < counts[0]["youngest"]
    manager = (await env.get("/api/v1/stats/tree_manager")).json()
    assert manager["message_counts"] == counts and manager["state_counts"]["growing"] == 1
    cached = (await env.get("/api/v1/stats/cached")).json()["stats_by_name"]
    assert cached["human_messages_by_role"]["stats"] == {"assistant": 1, "prompter": 1}
    assert cached["message_trees_by_state"]["stats"]["growing"] == 1
    error(await env.get("/api/v1/stats/cached/nope"), 422, 422)
    assert (await env.post("/api/v1/stats/cached/update")).status_code == 204
    assert (await env.post("/api/v1/leaderboards/update/week")).status_code == 204
    error(await env.post("/api/v1/leaderboards/update/year"), 422, 422)
    board = (await env.get("/api/v1/trollboards/total")).json()["trollboard"]
    assert all(row["lang_mismach"] == row["lang_mismatch"] for row in board)
    window = await env.get(f"/api/v1/users/{ids['u2']}/stats/total/window", window_size="1")
    rows = window.json()["leaderboard"]
    assert 1 <= len(rows) <= 3 and [r["user_id"] for r in rows if r["highlighted"]] == [ids["u2"]]
    r = await env.client.post("/api/v1/tasks/availability", headers=env.h)
    assert r.status_code == 200 and set(r.json()) >= {"random", "initial_prompt"}


async def test_settings_leave_secrets_out(world):
    env, _ = world
    full = (await env.get("/api/v1/admin/backend_settings/full")).json()
    public = (await env.get("/api/v1/admin/backend_settings/public")).json()
    assert public.items() <= full.items()
    assert full["MESSAGE_SIZE_LIMIT"] == SMALL.message_size_limit
    assert full["tree_manager"]["goal_tree_size"] == SMALL.goal_tree_size
    secret = ("KEY", "SECRET", "PASSWORD", "TOKEN", "SALT")
    assert not [k for k in full if any(s in k for s in secret)]


async def test_tree_shapes_and_user_message_deletion(world):
    env, ids = world
    await env.reply(who(3), "It is Paris.", "r2")
    longest = await env.get(f"/api/v1/messages/{ids['root']}/longest_conversation_in_tree")
    texts = [m["text"] for m in longest.json()["messages"]]
    assert texts == ["What is the capital of France?", "Paris is the capital of France."]
    by_fid = (await env.get("/api/v1/frontend_messages/mp1/max_children_in_tree")).json()
    assert by_fid["id"] == ids["root"] and len(by_fid["messages"]) == 2
    r = await env.client.delete(f"/api/v1/users/{ids['u2']}/messages", headers=env.h)
    assert r.status_code == 204, r.text
    gone = (await env.get(f"/api/v1/messages/{ids['reply']}")).json()
    assert gone["deleted"] is True and gone["text"].startswith("Paris")  # deleted, not purged
    r = await env.client.delete("/api/v1/frontend_users/local/nobody/messages", headers=env.h)
    error(r, 404, 4002)
    listed = (await env.get("/api/v1/frontend_users/", max_count="2")).json()
    assert [u["id"] for u in listed] == ["u1", "u2"]
