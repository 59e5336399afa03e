"""OA's POST /admin/merge_users as events (issue 16): the sources' messages, labels,
reactions, tasks and statistics are the destination's in every read model, the sources
are disabled and deleted, a rebuild from the log equals the live read model, and a
refused merge records nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from api.bootstrap import open_app
from api.http.app import create_app
from api.storage.logdb import log_location
from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.errors import InvalidInputError, UserNotFoundError
from domain.model.user import User
from domain.service.simulator import run_simulation
from projections import log_reader
from projections.log import StoreLog
from projections.oa_export import ExportOptions, TreeExporter
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from projections.stats_rules import FIELDS
from projections.user_merge import merged_users
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, error, in_process, new_client_key
from tests.projection_helpers import dump

# Each table and its column naming a user (the read models that attribute rows to users).
ATTRIBUTED = {
    "messages": "user_id",
    "labels": "user_id",
    "message_emojis": "user_id",
    "rankings": "user_id",
    "tasks": "user_id",
    "user_hours": "user_id",
    "user_streaks": "user_id",
    "stats_messages": "user_id",
    "stats_label_votes": "user_id",
    "stats_emojis": "user_id",
    "trees": "user_id",
    "agreement_rankings": "user_id",
    "ranking_agreement": "user_id",
    "arena_voters": "user_id",
}


def _counts(conn: sqlite3.Connection, user: str) -> dict[str, int]:
    return {
        t: conn.execute(f"SELECT count(*) FROM {t} WHERE {c} = ?", (user,)).fetchone()[0]
        for t, c in ATTRIBUTED.items()
    }


def _hours(conn: sqlite3.Connection, user: str) -> list[int]:
    sums = ", ".join(f"coalesce(sum({f}), 0)" for f in FIELDS)
    return list(
        conn.execute(f"SELECT {sums} FROM user_hours WHERE user_id = ?", (user,)).fetchone()
    )


def test_merge_moves_every_attributed_row_and_a_rebuild_equals_live(tmp_path: Path) -> None:
    app = open_app(tmp_path, TreeConfig(goal_tree_size=3, min_goal_tree_size=1))
    log = StoreLog(log_location(tmp_path))  # the folder's events.sqlite, or the configured store
    runner = ProjectionRunner(log, tmp_path / "live.sqlite", batch_size=64).start()
    try:
        run_simulation(app, runner, trees=3, users=10, seed=7)
        runner.catch_up(log.head())
        conn = runner.readmodel.reader()
        busiest = [
            r[0]
            for r in conn.execute(
                "SELECT user_id FROM messages GROUP BY user_id ORDER BY count(*) DESC, user_id"
            )
        ]
        dest, sources = busiest[0], busiest[1:3]
        before = {u: _counts(conn, u) for u in (dest, *sources)}
        hours = [sum(x) for x in zip(*(_hours(conn, u) for u in (dest, *sources)), strict=True)]
        assert all(before[s]["messages"] > 0 and before[s]["labels"] > 0 for s in sources)
        moderator = Actor(None, uuid4())

        position = app.merge_users(
            destination_user_id=UUID(dest),
            source_user_ids=[UUID(s) for s in sources],
            actor=moderator,
        )
        runner.catch_up(position)
        conn = runner.readmodel.reader()
        after = _counts(conn, dest)
        for s in sources:
            assert set(_counts(conn, s).values()) == {0}, s  # nothing names a source
        # authorship, tasks and stats' message rows move whole; a per-person row where
        # both had one (a label on the same message) counts the person once
        for table in ("messages", "tasks", "stats_messages", "trees"):
            assert after[table] == sum(before[u][table] for u in before), table
        for table in ("labels", "rankings", "stats_label_votes", "agreement_rankings"):
            assert before[dest][table] <= after[table] <= sum(before[u][table] for u in before)
        assert _hours(conn, dest) == hours  # counters summed
        users = {r[0]: r[1:] for r in conn.execute("SELECT user_id, enabled, deleted FROM users")}
        assert all(users[s] == (0, 1) for s in sources) and users[dest] == (1, 0)

        # the log holds the merge as past-tense events, the sources' own events unchanged
        merged = app.repository.get(UUID(dest))
        assert isinstance(merged, User) and merged.merged_into is None
        source = app.repository.get(UUID(sources[0]))
        assert source.merged_into == UUID(dest) and source.deleted and not source.enabled
        # the OA export (a reader of the log) attributes the sources' rows as well
        exported = b"".join(
            TreeExporter(
                ExportOptions(state=None, events=True, include_spam=True, include_deleted=True),
                merged=merged_users(log_reader.events_db(tmp_path), log.head()),
            ).lines(log_reader.iter_trees(log_reader.events_db(tmp_path), log.head()))
        ).decode()
        assert dest in exported and not any(s in exported for s in sources)
        # the log goes on after the merge (others label and answer the sources' messages)
        run_simulation(app, runner, trees=2, users=6, seed=8)
        runner.catch_up(log.head())
        conn = runner.readmodel.reader()
        assert all(set(_counts(conn, s).values()) == {0} for s in sources)
        runner.stop()
        rebuild(log, tmp_path / "rebuilt.sqlite", batch_size=500)
        rebuilt = ProjectionRunner(log, tmp_path / "rebuilt.sqlite")
        live, again = dump(runner.readmodel.reader()), dump(rebuilt.readmodel.reader())
        for table in live:
            assert live[table] == again[table], table
        rebuilt.close()
    finally:
        runner.stop()
        runner.close()


def test_refused_merges_record_nothing(tmp_path: Path) -> None:
    app = open_app(tmp_path, TreeConfig())
    client, _ = app.register_client(name="t")
    a, b, c = (app.ensure_user(client_id=client, auth_method="local", username=n) for n in "abc")
    actor = Actor(None, client)
    head = app.recorder.max_notification_id()
    for dest, sources, error_class in (
        (a, [a], InvalidInputError),  # into itself
        (a, [b, a], InvalidInputError),
        (a, [b, b], InvalidInputError),
        (a, [], InvalidInputError),
        (uuid4(), [b], UserNotFoundError),
        (a, [b, uuid4()], UserNotFoundError),
    ):
        with pytest.raises(error_class):
            app.merge_users(destination_user_id=dest, source_user_ids=sources, actor=actor)
        assert app.recorder.max_notification_id() == head
    app.merge_users(destination_user_id=a, source_user_ids=[b], actor=actor)
    head = app.recorder.max_notification_id()
    for dest, sources in ((c, [b]), (b, [c])):  # a merged user is gone: neither side again
        with pytest.raises(InvalidInputError):
            app.merge_users(destination_user_id=dest, source_user_ids=sources, actor=actor)
    assert app.recorder.max_notification_id() == head
    # a destination may be merged on: its sources' rows lead to the last one
    app.merge_users(destination_user_id=c, source_user_ids=[a], actor=actor)
    head = app.recorder.max_notification_id()
    assert merged_users(log_reader.events_db(tmp_path), head) == {b: c, a: c}


# ---------------------------------------------------------------------------- over HTTP


def who(i: int) -> dict[str, str]:
    return {"id": f"u{i}", "display_name": f"User {i}", "auth_method": "local"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: Any) -> AsyncIterator[tuple[Env, dict[str, str]]]:
    """A prompt by u1 (accepted by u2, u3) and an assistant reply by u2."""
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=1)
    async with in_process(app) as client:
        env = Env(client, WEB_KEY)
        await env.prompt(who(1), "What is the capital of France?", "p1")
        root = await env.accept_prompt([who(2), who(3)])
        await env.reply(who(2), "Paris is the capital of France.", "r1")
        reply = (await env.get(f"/api/v1/messages/{root}/children")).json()[0]["id"]
        ids = {"root": root, "reply": reply}
        for i in (1, 2, 3):
            ids[f"u{i}"] = (await env.get(f"/api/v1/frontend_users/local/u{i}")).json()["user_id"]
        yield env, ids


async def _head(env: Env) -> int:
    return (await env.get("/health")).json()["log_position"]


@pytest.mark.anyio
async def test_merge_over_http_as_oa(world: tuple[Env, dict[str, str]]) -> None:
    env, ids = world
    stats = (await env.get(f"/api/v1/users/{ids['u2']}/stats/total")).json()
    assert stats["replies_assistant"] == 1
    before = await _head(env)
    body = {"destination_user_id": ids["u1"], "source_user_ids": [ids["u2"], ids["u3"]]}
    r = await env.post("/api/v1/admin/merge_users", body)
    assert r.status_code == 204, r.text
    assert await _head(env) == before + 3  # UsersMerged + a MergedInto per source

    reply = (await env.get(f"/api/v1/messages/{ids['reply']}")).json()
    assert reply["user_id"] == ids["u1"]
    mine = (await env.get(f"/api/v1/users/{ids['u1']}/messages")).json()
    assert {m["id"] for m in mine} == {ids["root"], ids["reply"]}
    assert (await env.get(f"/api/v1/users/{ids['u2']}/messages")).json() == []
    merged = (await env.get(f"/api/v1/users/{ids['u1']}/stats/total")).json()
    assert merged["replies_assistant"] == 1 and merged["prompts"] == 1
    assert merged["labels_full"] + merged["labels_simple"] >= 2  # u2's and u3's reviews
    board = (await env.get("/api/v1/leaderboards/total")).json()["leaderboard"]
    assert [row["user_id"] for row in board] == [ids["u1"]]
    for source in ("u2", "u3"):
        gone = (await env.get(f"/api/v1/users/{ids[source]}")).json()
        assert gone["enabled"] is False and gone["deleted"] is True
    r = await env.post("/api/v1/tasks/", {"type": "random", "user": who(2)})
    assert r.status_code >= 400  # a merged user gets no more tasks


@pytest.mark.anyio
async def test_refusals_over_http_record_nothing(world: tuple[Env, dict[str, str]]) -> None:
    env, ids = world
    untrusted = {"X-API-Key": await new_client_key(env.client)}
    before = await _head(env)
    path = "/api/v1/admin/merge_users"
    ok = {"destination_user_id": ids["u1"], "source_user_ids": [ids["u2"]]}
    r = await env.post(path, ok, headers=untrusted)
    assert r.status_code == 403, r.text
    error(await env.post(path, {**ok, "source_user_ids": [ids["u1"]]}), 422, 422)
    error(await env.post(path, {**ok, "source_user_ids": []}), 422, 422)
    error(await env.post(path, {**ok, "destination_user_id": str(uuid4())}), 404, 4002)
    error(await env.post(path, {**ok, "source_user_ids": [ids["u2"], str(uuid4())]}), 404, 4002)
    error(await env.post(path, {"destination_user_id": "nope", "source_user_ids": []}), 422, 422)
    assert await _head(env) == before
    assert (await env.get(f"/api/v1/messages/{ids['reply']}")).json()["user_id"] == ids["u2"]
