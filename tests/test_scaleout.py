"""Two server processes on one store (SQLite and PostgreSQL): nodes started with
``dataengine serve --shared`` on their own ports, as behind a load balancer.

Under a small concurrent load that alternates nodes request by request: every
acknowledged write is in the log once, a client's next request on the other node sees
its last write (``X-Log-Position``), exactly one process runs the process loop and the
survivor takes it over after a kill -9 of its holder, and the rate limit holds across
the nodes. ``serve --workers 2`` starts two processes with read models of their own.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.http_helpers import ROOT, Crowd, free_port, small_config_env

REPO = Path(__file__).resolve().parent.parent
LEADER = re.compile(r"the process loop runs in this process \(pid (\d+)\)")


class Node:
    def __init__(self, data: Path, name: str, *extra: str, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data / f"{name}.log"
        command = [sys.executable, "-m", "api.cli", "serve", "--data", str(data)]
        command += ["--port", str(self.port), *extra]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, deadline: float) -> None:
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.url} did not start: {self.log()[-3000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def leads(self) -> bool:
        return any(int(pid) == self.proc.pid for pid in LEADER.findall(self.log()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def node_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,  # DATAENGINE_STORE under the PostgreSQL case (each_store)
        "DATAENGINE_ROOT_TOKENS": ROOT,
        "DATAENGINE_SYNCHRONOUS": "NORMAL",
        "DATAENGINE_PROCESS_INTERVAL": "0.3",
        "DATAENGINE_RATE_LIMIT": "true",
        "DATAENGINE_RATE_LIMIT_USER_TASKS": "100000/60",
        "DATAENGINE_RATE_LIMIT_ASSISTANT_REPLY": "3/60",
        "DATAENGINE_TREE__MAX_INITIAL_PROMPT_REVIEW": "10000",
        "DATAENGINE_TREE__MAX_PROMPT_LOTTERY_WAITING": "10000",
        **small_config_env(),
        **extra,
    }


@contextmanager
def nodes(data: Path, count: int, *extra: str) -> Iterator[list[Node]]:
    started: list[Node] = []
    try:
        for i in range(count):
            started.append(Node(data, f"node{i}", *extra, env=node_env()))
        deadline = time.monotonic() + 45
        for node in started:
            node.wait_ready(deadline)
        yield started
    finally:
        for node in started:  # always, whatever failed
            node.stop()


def wait_for(predicate: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Load:
    """Clients that each write prompts, every request on the next live node, carrying the
    highest ``X-Log-Position`` they have seen; a node that stops answering is dropped."""

    def __init__(self, urls: list[str], key: str):
        self.live = list(urls)
        self.headers = {"X-API-Key": key}
        self.acked: list[str] = []  # frontend ids of acknowledged prompts
        self.stale_reads = 0
        self.failovers = 0

    async def call(
        self,
        client: httpx.AsyncClient,
        turn: int,
        method: str,
        path: str,
        seen: list[int],
        **kw: Any,
    ) -> httpx.Response:
        while True:
            url = self.live[turn % len(self.live)]
            headers = {**self.headers, "X-Log-Position": str(seen[0])}
            try:
                r = await client.request(method, url + path, headers=headers, **kw)
            except httpx.TransportError:
                if url in self.live and len(self.live) > 1:
                    self.live.remove(url)
                    self.failovers += 1
                raise
            seen[0] = max(seen[0], int(r.headers["x-log-position"]))
            return r

    async def person(self, client: httpx.AsyncClient, i: int, prompts: int) -> None:
        who = {"id": f"load{i}", "display_name": f"Load {i}", "auth_method": "local"}
        seen, turn = [0], i
        for n in range(prompts):
            fid = f"p{i}-{n}"
            try:
                r = await self.call(
                    client,
                    turn,
                    "POST",
                    "/api/v1/tasks/",
                    seen,
                    json={"type": "initial_prompt", "user": who},
                )
                assert r.status_code == 200, r.text
                task = r.json()
                r = await self.call(
                    client,
                    turn + 1,
                    "POST",
                    f"/api/v1/tasks/{task['id']}/ack",
                    seen,
                    json={"message_id": fid},
                )
                assert r.status_code == 204, r.text
                body = {
                    "type": "text_reply_to_message",
                    "message_id": fid,
                    "user_message_id": "m" + fid,
                    "text": f"prompt {fid}",
                    "user": who,
                }
                r = await self.call(
                    client, turn, "POST", "/api/v1/tasks/interaction", seen, json=body
                )
                assert r.status_code == 200, r.text
                self.acked.append("m" + fid)
                # the next request, on the other node, sees the write
                r = await self.call(
                    client, turn + 1, "GET", f"/api/v1/frontend_messages/m{fid}", seen
                )
                if r.status_code != 200:
                    self.stale_reads += 1
            except httpx.TransportError:
                pass  # a killed node's requests: not acknowledged, the next goes elsewhere
            turn += 1

    async def run(self, clients: int, prompts: int) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(self.person(client, i, prompts) for i in range(clients)))


def new_key(url: str) -> str:
    r = httpx.post(
        url + "/api/v1/admin/api_client",
        json={"description": "load", "frontend_type": "tests", "trusted": False},
        headers={"Authorization": f"Bearer {ROOT}"},
    )
    assert r.status_code == 200, r.text
    return str(r.json())


def admitted(urls: list[str], key: str, requests: int) -> int:
    """Explicit assistant_reply requests by one user, alternating nodes, not refused 429."""
    who = {"id": "limited", "display_name": "Limited", "auth_method": "local"}
    statuses = []
    for i in range(requests):
        r = httpx.post(
            urls[i % len(urls)] + "/api/v1/tasks/",
            json={"type": "assistant_reply", "user": who},
            headers={"X-API-Key": key},
        )
        statuses.append(r.status_code)
    return sum(1 for s in statuses if s != 429)


def readmodel_duplicates(data: Path, pid: int) -> tuple[set[str], int]:
    """Frontend ids of the messages in process ``pid``'s read model, and how many were
    there twice."""
    (slot,) = [
        lease.parent
        for lease in (data / "workers").glob("*/slot.lease")
        if lease.read_text().strip() == str(pid)
    ]
    path = slot / "readmodel.sqlite"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT frontend_message_id, count(*) FROM messages GROUP BY 1"
        ).fetchall()
    finally:
        conn.close()
    return {r[0] for r in rows}, sum(1 for r in rows if r[1] > 1)


def rows_equal_a_rebuild(data: Path, pid: int) -> None:
    """The read model of process ``pid`` (stopped) equals one rebuilt from the log up to
    the same position, table by table."""
    from api.storage.logdb import log_location
    from projections.log import StoreLog
    from projections.runner import ProjectionRunner
    from projections.store import ReadModel

    (slot,) = [
        lease.parent
        for lease in (data / "workers").glob("*/slot.lease")
        if lease.read_text().strip() == str(pid)
    ]
    live = ReadModel(slot / "readmodel.sqlite")
    upto = min(live.positions().values())
    rebuilt_path = data / "rebuilt" / "readmodel.sqlite"
    rebuilt_path.parent.mkdir()
    runner = ProjectionRunner(StoreLog(log_location(data)), rebuilt_path)
    runner.run_once(until=upto)
    runner.close()
    a = sqlite3.connect(slot / "readmodel.sqlite")
    b = sqlite3.connect(rebuilt_path)
    try:
        for table in live.tables():
            query = f"SELECT * FROM {table}"
            assert sorted(map(repr, a.execute(query))) == sorted(map(repr, b.execute(query))), table
    finally:
        a.close()
        b.close()


def test_two_nodes_one_store(tmp_path: Path, each_store: str) -> None:
    with nodes(tmp_path, 2, "--shared") as (a, b):
        urls = [a.url, b.url]
        key = new_key(a.url)
        # the shared rate limit: 3 explicit assistant_reply requests a minute, both nodes together
        assert admitted(urls, key, 8) == 3
        # exactly one process loop runner
        assert wait_for(lambda: a.leads() or b.leads(), 10), a.log()[-2000:]
        leader, survivor = (a, b) if a.leads() else (b, a)
        time.sleep(1.0)  # several rounds: the other node never starts running them
        assert not survivor.leads()

        load = Load(urls, key)

        async def load_then_kill() -> None:
            running = asyncio.ensure_future(load.run(clients=32, prompts=4))
            while len(load.acked) < 30 and not running.done():
                await asyncio.sleep(0.02)
            os.kill(leader.proc.pid, signal.SIGKILL)  # mid-load
            await running

        asyncio.run(load_then_kill())
        assert leader.proc.wait(timeout=10) == -signal.SIGKILL
        # the survivor takes the process loop over
        assert wait_for(survivor.leads, 10), survivor.log()[-2000:]
        assert load.stale_reads == 0
        assert len(load.acked) >= 60, (len(load.acked), load.failovers)
        # every acknowledged write is in the log, once
        r = httpx.get(survivor.url + "/health", headers={"X-Log-Position": "0"})
        assert r.status_code == 200, r.text
        for fid in load.acked:
            got = httpx.get(
                f"{survivor.url}/api/v1/frontend_messages/{fid}", headers={"X-API-Key": key}
            )
            assert got.status_code == 200, got.text
        ids, twice = readmodel_duplicates(tmp_path, survivor.proc.pid)
        assert set(load.acked) <= ids and twice == 0
        survivor.stop()
        rows_equal_a_rebuild(tmp_path, survivor.proc.pid)


def test_serve_workers_runs_processes_with_their_own_read_models(tmp_path: Path) -> None:
    with nodes(tmp_path, 1, "--workers", "2") as (parent,):
        key = new_key(parent.url)
        assert admitted([parent.url], key, 6) == 3
        assert wait_for(
            lambda: len(list((tmp_path / "workers").glob("*/readmodel.sqlite"))) == 2, 20
        )
        pids = {int(p) for p in LEADER.findall(parent.log())}
        assert len(pids) == 1  # one of the two workers runs the process loop

        # a crowd whose requests both workers answer: no slot handed out twice, so no
        # answer refused (each worker's own claims alone left ~3 % refused)
        async def crowd_run() -> Crowd:
            async with httpx.AsyncClient(base_url=parent.url, timeout=30) as client:
                crowd = Crowd(client, key, users=12, trees=10**6, seed=5)
                await crowd.run(max_cycles=300, active_target=6, poll_interval=0.05)
                return crowd

        crowd = asyncio.run(crowd_run())
        assert crowd.cycles >= 200 and crowd.errors == [], (crowd.cycles, crowd.errors[:3])
