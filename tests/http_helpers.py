"""A front end speaking only OA's HTTP protocol, for the HTTP tests and bench/http.py.

``Crowd`` drives simulated users through request -> ack -> interaction cycles as OA's
text front end does (reference §8), against any base URL or an in-process ASGI app,
until enough trees are ready for export. It learns the world only through HTTP.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx

from domain.model.config import TreeConfig

SMALL = TreeConfig(
    goal_tree_size=3,
    min_goal_tree_size=1,
    num_required_rankings=2,
    num_reviews_initial_prompt=2,
    num_reviews_reply=2,
)
ROOT = "root-token-for-tests"
WEB_KEY = "trusted-web-key-for-tests"


@asynccontextmanager
async def in_process(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app, with the app's lifespan (store and runner) around it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def new_client_key(client: httpx.AsyncClient, trusted: bool = False) -> str:
    r = await client.post(
        "/api/v1/admin/api_client",
        json={"description": "tests", "frontend_type": "tests", "trusted": trusted},
        headers={"Authorization": f"Bearer {ROOT}"},
    )
    assert r.status_code == 200, r.text
    return r.json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_config_env() -> dict[str, str]:
    """SMALL as DATAENGINE_TREE__* variables, for a server in another process."""
    fields = (
        "goal_tree_size",
        "min_goal_tree_size",
        "num_required_rankings",
        "num_reviews_initial_prompt",
        "num_reviews_reply",
    )
    return {f"DATAENGINE_TREE__{f.upper()}": str(getattr(SMALL, f)) for f in fields}


@contextmanager
def server(data: Path, command: list[str] | None = None, **env: str) -> Iterator[tuple[str, Any]]:
    """A real server process on loopback: yields (base URL, process); stops it after.

    The default command is `dataengine serve`; the root token, trusted web key and the
    SMALL config come through the environment, as in production. OA's rate limits are off
    (a crowd of ten users asks for far more than 30 tasks each in 4 minutes) unless
    ``DATAENGINE_RATE_LIMIT`` is passed."""
    port = free_port()
    command = command or [
        sys.executable,
        "-m",
        "api.cli",
        "serve",
        "--data",
        str(data),
        "--port",
        str(port),
    ]
    command = [part.replace("{port}", str(port)) for part in command]
    environ = {
        **os.environ,
        "DATAENGINE_ROOT_TOKENS": ROOT,
        "DATAENGINE_WEB_API_KEY": WEB_KEY,
        "DATAENGINE_DATA": str(data),
        "DATAENGINE_RATE_LIMIT": "false",
        "DATAENGINE_PROCESS_INTERVAL": "1",
        **small_config_env(),
        **env,
    }
    log = open(data / "server.log", "w+b")  # a file, not a pipe: a full pipe would block it
    proc = subprocess.Popen(
        command,
        env=environ,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc.log_path = data / "server.log"  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                import httpx as _h

                if _h.get(url + "/health", timeout=1).status_code == 200:
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {proc.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def user(i: int) -> dict[str, str]:
    return {"id": f"u{i}", "display_name": f"User {i}", "auth_method": "local"}


U = user(1)


class Env:
    def __init__(self, client: httpx.AsyncClient, key: str):
        self.client, self.key = client, key
        self.h = {"X-API-Key": key}
        self.trusted = {"X-API-Key": WEB_KEY}

    async def post(
        self, path: str, body: Any = None, headers: dict | None = None, **kw: Any
    ) -> httpx.Response:
        return await self.client.post(path, json=body, headers=headers or self.h, **kw)

    async def task(self, who: dict = U, kind: str = "random") -> dict:
        r = await self.post("/api/v1/tasks/", {"type": kind, "user": who})
        assert r.status_code == 200, r.text
        return r.json()

    async def ack(self, task: dict, fid: str) -> None:
        r = await self.post(f"/api/v1/tasks/{task['id']}/ack", {"message_id": fid})
        assert r.status_code == 204, r.text

    async def prompt(self, who: dict, text: str, fid: str) -> dict:
        task = await self.task(who, "initial_prompt")
        await self.ack(task, fid)
        body = {
            "type": "text_reply_to_message",
            "message_id": fid,
            "user_message_id": "m" + fid,
            "text": text,
            "user": who,
        }
        r = await self.post("/api/v1/tasks/interaction", body)
        assert r.status_code == 200, r.text
        return task

    async def label_task(self, who: dict) -> dict:
        task = await self.task(who, "label_initial_prompt")
        return task

    async def get(self, path: str, headers: dict | None = None, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=headers or self.h)

    async def accept_prompt(self, reviewers: list[dict]) -> str:
        """Review the waiting prompt with ``reviewers`` (SMALL needs two); its tree id."""
        tree_id = ""
        for who in reviewers:
            task = await self.label_task(who)
            tree_id = task["message_id"]
            await self.ack(task, f"review-{who['id']}-{task['id']}")
            r = await self.post(
                "/api/v1/tasks/interaction",
                {
                    "type": "text_labels",
                    "message_id": tree_id,
                    "task_id": task["id"],
                    "user": who,
                    "labels": {n: 0 for n in task["valid_labels"]},
                },
            )
            assert r.status_code == 200, r.text
        return tree_id

    async def reply(self, who: dict, text: str, fid: str, kind: str = "assistant_reply") -> dict:
        task = await self.task(who, kind)
        await self.ack(task, fid)
        r = await self.post(
            "/api/v1/tasks/interaction",
            {
                "type": "text_reply_to_message",
                "message_id": fid,
                "user_message_id": "m" + fid,
                "text": text,
                "user": who,
            },
        )
        assert r.status_code == 200, r.text
        return task


def error(r: httpx.Response, status: int, code: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error_code"] == code and isinstance(body["message"], str), body
    return body["message"]


def answer(
    task: dict[str, Any], who: dict[str, str], frontend_id: str, n: int, rng: random.Random
) -> dict[str, Any]:
    """The interaction a front end sends for ``task``, acknowledged as ``frontend_id``: a
    text (its new message's frontend id is ``m<n>``), a shuffled ranking, or labels."""
    kind = task["type"]
    if kind in ("initial_prompt", "prompter_reply", "assistant_reply"):
        return {
            "type": "text_reply_to_message",
            "message_id": frontend_id,
            "user_message_id": f"m{n}",
            "text": f"{kind} number {n} by {who['id']}",
            "user": who,
        }
    if kind.startswith("rank_"):
        order = list(range(len(task["replies"])))
        rng.shuffle(order)
        return {"type": "message_ranking", "message_id": frontend_id, "ranking": order, "user": who}
    labels = {
        name: ("0" if name in ("spam", "lang_mismatch") else "0.75")
        for name in task["valid_labels"]
    }  # strings, as the text front end sends
    return {
        "type": "text_labels",
        "message_id": task["message_id"],
        "task_id": task["id"],
        "text": task.get("prompt") or task.get("reply"),
        "labels": labels,
        "user": who,
    }


class Crowd:
    def __init__(
        self, client: httpx.AsyncClient, key: str, *, users: int, trees: int, seed: int = 0
    ):
        self.client, self.trees = client, trees
        self.headers = {"X-API-Key": key}
        self.users = [user(i) for i in range(users)]
        self.rng = random.Random(seed)
        self.ids = itertools.count()
        self.types: dict[str, int] = {}
        self.tree_ids: set[str] = set()
        self.errors: list[str] = []
        self.cycles = 0
        self.attempts = 0
        self.latencies: list[float] = []

    async def post(self, path: str, body: Any) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.headers)

    async def state_counts(self) -> dict[str, int]:
        r = await self.client.get("/api/v1/stats/tree_manager/state_counts", headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()

    async def live_and_ready(self) -> tuple[int, int]:
        counts = await self.state_counts()
        dead = counts["aborted_low_grade"] + counts["halted_by_moderator"]
        return sum(counts.values()) - dead, counts["ready_for_export"]

    async def cycle(self, who: dict[str, str], want_prompt: bool) -> bool:
        """One task: request, ack, answer. False when no task was available."""
        kind = "initial_prompt" if want_prompt else "random"
        started = time.perf_counter()
        r = await self.post("/api/v1/tasks/", {"type": kind, "user": who})
        if r.status_code == 503 and r.json()["error_code"] == 1006:
            return False
        assert r.status_code == 200, r.text
        task = r.json()
        self.types[task["type"]] = self.types.get(task["type"], 0) + 1
        if "message_tree_id" in task:
            self.tree_ids.add(task["message_tree_id"])
        n = next(self.ids)
        ack = await self.post(f"/api/v1/tasks/{task['id']}/ack", {"message_id": f"f{n}"})
        assert ack.status_code == 204, ack.text
        body = self.answer(task, who, f"f{n}", n)
        done = await self.post("/api/v1/tasks/interaction", body)
        if done.status_code != 200:  # the world moved on since the hand-out: skip it
            self.errors.append(done.text)
            nack = await self.client.post(
                f"/api/v1/tasks/{task['id']}/nack",
                json={"reason": "failed"},
                headers={**self.headers, "x-oasst-user": f"local:{who['id']}"},
            )
            assert nack.status_code in (204, 400), nack.text
            return True
        assert done.json() == {"type": "task_done", "id": task["id"]}, done.text
        self.latencies.append(time.perf_counter() - started)
        self.cycles += 1
        return True

    def answer(
        self, task: dict[str, Any], who: dict[str, str], frontend_id: str, n: int
    ) -> dict[str, Any]:
        return answer(task, who, frontend_id, n, self.rng)

    async def run(
        self,
        max_cycles: int = 2000,
        *,
        check_every: int = 1,
        duration: float | None = None,
        active_target: int | None = None,
        poll_interval: float | None = None,
    ) -> int:
        """Drive every user concurrently until ``trees`` are ready (or ``max_cycles``
        attempts were made); returns the number of trees ready for export.

        With ``active_target`` (a benchmark's steady state) prompts are requested while
        fewer trees than that are unfinished, and ``trees`` only ends the run. Each user
        reads the tree counts every ``check_every`` cycles, or, with ``poll_interval``,
        one poller reads them for everybody that often (a benchmark's choice: counts that
        are many cycles old make every user ask for prompts, and the review backlog grows
        without bound)."""
        stop = asyncio.Event()
        ready_seen = [0]
        until = time.monotonic() + duration if duration is not None else None
        shared = [0, 0]  # live, ready: kept by the poller

        async def poller() -> None:
            while not stop.is_set():
                shared[:] = await self.live_and_ready()
                ready_seen[0] = max(ready_seen[0], shared[1])
                await asyncio.sleep(poll_interval)  # type: ignore[arg-type]

        async def person(who: dict[str, str]) -> None:
            live = ready = 0
            for step in itertools.count():
                if stop.is_set() or self.attempts >= max_cycles:
                    return
                if until is not None and time.monotonic() > until:
                    return
                self.attempts += 1
                if poll_interval is not None:
                    live, ready = shared
                elif step % check_every == 0:
                    live, ready = await self.live_and_ready()
                    ready_seen[0] = max(ready_seen[0], ready)
                if ready >= self.trees:
                    stop.set()
                    return
                want = live < self.trees if active_target is None else live - ready < active_target
                if not await self.cycle(who, want_prompt=want):
                    await asyncio.sleep(0.005)

        polling = asyncio.ensure_future(poller()) if poll_interval is not None else None
        if polling is not None:
            shared[:] = await self.live_and_ready()
        try:
            await asyncio.gather(*(person(u) for u in self.users))
        finally:
            stop.set()
            if polling is not None:
                await polling
        return max(ready_seen[0], (await self.live_and_ready())[1])
