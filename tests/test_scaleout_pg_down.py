"""PostgreSQL stopped and started again under two server nodes and a running load: each
node answers 503 with a clear message while it is down (at once, not after the driver's
retries), both recover by themselves, every acknowledged write is kept, and exactly one
node runs the process loop afterwards."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import httpx

from tests.pg_fixture import PG_BIN
from tests.test_scaleout import Node, new_key, nodes, wait_for

LEASE = re.compile(r"the process loop (runs|no longer runs) in this process \(pid (\d+)\)")


def leads_now(node: Node) -> bool:
    """Whether the node's last word on the process loop's lease is that it holds it."""
    said = [m.group(1) for m in LEASE.finditer(node.log()) if int(m.group(2)) == node.proc.pid]
    return bool(said) and said[-1] == "runs"


def pg_ctl(postgres: Any, *args: str) -> None:
    postgres._run(str(PG_BIN / "pg_ctl"), "-D", str(postgres.data), *args)


class Writer:
    """Writes prompts in a thread, node after node, until stopped; keeps what was acked."""

    def __init__(self, urls: list[str], key: str):
        self.urls, self.headers = urls, {"X-API-Key": key}
        self.acked: list[str] = []
        self.statuses: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def prompt(self, n: int) -> int:
        who = {"id": f"w{n}", "display_name": "W", "auth_method": "local"}
        url = self.urls[n % len(self.urls)]
        with httpx.Client(base_url=url, headers=self.headers, timeout=3) as c:
            r = c.post("/api/v1/tasks/", json={"type": "initial_prompt", "user": who})
            if r.status_code == 200:
                task = r.json()
                r = c.post(f"/api/v1/tasks/{task['id']}/ack", json={"message_id": f"w{n}"})
            if r.status_code in (200, 204):
                body = {"type": "text_reply_to_message", "message_id": f"w{n}", "user": who}
                body |= {"user_message_id": f"mw{n}", "text": f"w {n}"}
                r = c.post("/api/v1/tasks/interaction", json=body)
                if r.status_code == 200:
                    self.acked.append(f"mw{n}")
        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
        return r.status_code

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                self.prompt(n)
            except httpx.HTTPError:
                pass  # a request that waited through the driver's retries: not acknowledged


def refused_at_once(url: str, headers: dict[str, str]) -> bool:
    who = {"id": "x", "display_name": "x", "auth_method": "local"}
    try:
        r = httpx.post(
            url + "/api/v1/tasks/",
            json={"type": "initial_prompt", "user": who},
            headers=headers,
            timeout=2,
        )
    except httpx.TimeoutException:
        return False  # this one met the outage first and waits through the retries
    ok = r.status_code == 503 and "event store is unreachable" in r.json()["message"]
    return ok and r.headers["Retry-After"] == "1"


def healthy(url: str) -> bool:
    return httpx.get(url + "/health", timeout=5).status_code == 200


def test_postgresql_restarted_under_two_nodes_and_a_load(
    tmp_path: Path, postgres: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("DATAENGINE_STORE", postgres.url())
    with nodes(tmp_path, 2, "--shared") as (a, b):
        key = new_key(a.url)
        writer = Writer([a.url, b.url], key)
        writer.thread.start()
        try:
            assert wait_for(lambda: len(writer.acked) >= 5, 20), writer.statuses
            pg_ctl(postgres, "-m", "fast", "-w", "stop")
            try:
                for node in (a, b):
                    assert wait_for(lambda u=node.url: refused_at_once(u, writer.headers), 20)
                    assert httpx.get(node.url + "/health", timeout=5).status_code == 503
            finally:
                options = (
                    f"-p {postgres.port} -k {postgres.folder} -c listen_addresses=127.0.0.1"
                    " -c fsync=off -c max_connections=200"
                )
                log = str(postgres.folder / "server.log")
                pg_ctl(postgres, "-l", log, "-o", options, "-w", "start")
            # back by themselves: both nodes write and their read models follow again
            before = len(writer.acked)
            assert wait_for(lambda: len(writer.acked) >= before + 6, 30), writer.statuses
            for node in (a, b):
                assert wait_for(lambda u=node.url: healthy(u), 20)
        finally:
            writer.stop.set()
            writer.thread.join(timeout=30)
        # one node runs the process loop again (the lease went with the sessions)
        assert wait_for(lambda: leads_now(a) != leads_now(b), 15), (
            a.log()[-1500:],
            b.log()[-1500:],
        )
        for fid in writer.acked:
            for node in (a, b):
                got = httpx.get(
                    f"{node.url}/api/v1/frontend_messages/{fid}",
                    headers={**writer.headers, "X-Log-Position": "0"},
                )
                assert got.status_code == 200, got.text
