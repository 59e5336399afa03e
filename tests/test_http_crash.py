"""Crash test: under load, kill -9 `dataengine serve`, restart it on the same data, and
check that no acknowledged interaction was lost and the read models equal a rebuild.

Several threads run OA task cycles (request, ack, interaction) against a real server on
loopback and note every interaction answered 2xx. The server is killed with SIGKILL while
they run (requests in flight get no answer, so they were never acknowledged). After the
restart every acknowledged answer must be in the log: each text is a message found by its
frontend id, each label submission and ranking an event of its tree by that user; sent
again, each gets the same answer and records nothing. Finally the live read models, caught
up after the restart, must equal a rebuild from the log (projections.audit.history.replay).

SQLite runs with synchronous=NORMAL here: a killed process loses nothing committed to the
WAL (only a power cut can), so this checks what a process crash can break. In the
PostgreSQL pass the server's connections die with it and their open transactions roll
back; on both stores the log's positions must stay gapless (a hole reads as a deleted
event to the audit), and the SQLite file must pass its integrity check.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from projections.audit.history import replay
from projections.audit.replay_check import read_model
from tests import log_helpers
from tests.http_helpers import ROOT, answer, server, user

THREADS = 6
ACKED_BEFORE_KILL = 120  # interactions answered 2xx before the kill (or 15 s, whichever first)


class Load:
    def __init__(self, url: str, key: str):
        self.url, self.key = url, key
        self.stop = threading.Event()
        self.ids = itertools.count()
        self.lock = threading.Lock()
        self.acked: list[tuple[dict, dict]] = []  # (task, interaction body) answered 2xx
        self.server_errors: list[str] = []

    def person(self, who: dict[str, str]) -> None:
        rng = random.Random(who["id"])
        with httpx.Client(base_url=self.url, timeout=10, headers={"X-API-Key": self.key}) as c:
            while not self.stop.is_set():
                try:
                    self.cycle(c, who, rng)
                except httpx.TransportError:  # the server is gone
                    return

    def cycle(self, c: httpx.Client, who: dict[str, str], rng: random.Random) -> None:
        n = next(self.ids)
        kind = "initial_prompt" if n % 6 == 0 else "random"
        r = c.post("/api/v1/tasks/", json={"type": kind, "user": who})
        if r.status_code != 200:
            self.note(r)
            time.sleep(0.005)
            return
        task = r.json()
        fid = f"f{n}"
        ack = c.post(f"/api/v1/tasks/{task['id']}/ack", json={"message_id": fid})
        if ack.status_code != 204:
            self.note(ack)
            return
        body = answer(task, who, fid, n, rng)
        done = c.post("/api/v1/tasks/interaction", json=body)
        if 200 <= done.status_code < 300:
            assert done.json() == {"type": "task_done", "id": task["id"]}, done.text
            with self.lock:
                self.acked.append((task, body))
            return
        self.note(done)
        c.post(
            f"/api/v1/tasks/{task['id']}/nack",
            json={"reason": "refused"},
            headers={"x-oasst-user": f"local:{who['id']}"},
        )

    def note(self, r: httpx.Response) -> None:
        if r.status_code >= 500 and r.json().get("error_code") != 1006:
            self.server_errors.append(r.text)


def _run_until_killed(data: Path) -> Load:
    with server(data, DATAENGINE_SYNCHRONOUS="NORMAL") as (url, proc):
        r = httpx.post(
            f"{url}/api/v1/admin/api_client",
            headers={"Authorization": f"Bearer {ROOT}"},
            json={"description": "crash", "frontend_type": "tests"},
        )
        load = Load(url, r.json())
        threads = [threading.Thread(target=load.person, args=(user(i),)) for i in range(THREADS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 15
        while len(load.acked) < ACKED_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()  # SIGKILL, mid-load: no shutdown, no flush, no lifespan
        proc.wait()
        load.stop.set()
        for t in threads:
            t.join(timeout=30)
    return load


def _check_acknowledged(url: str, load: Load) -> None:
    with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": load.key}) as c:
        user_ids = {}
        for i in range(THREADS):
            found = c.get(f"/api/v1/frontend_users/local/u{i}")
            if found.status_code == 200:
                user_ids[f"u{i}"] = found.json()["user_id"]
        events: dict[str, list[dict]] = {}

        def tree_events(tree_id: str) -> list[dict]:
            if tree_id not in events:
                r = c.get(f"/api/v1/trees/{tree_id}/events")
                assert r.status_code == 200, r.text
                events[tree_id] = r.json()
            return events[tree_id]

        for task, body in load.acked:
            author = user_ids[body["user"]["id"]]
            if body["type"] == "text_reply_to_message":
                r = c.get(f"/api/v1/frontend_messages/{body['user_message_id']}")
                assert r.status_code == 200, (body, r.text)
                assert r.json()["text"] == body["text"] and r.json()["user_id"] == author
            elif body["type"] == "text_labels":
                assert any(
                    e["type"] == "LabelsSubmitted"
                    and e["user_id"] == author
                    and e["data"]["message_id"] == task["message_id"]
                    for e in tree_events(task["message_tree_id"])
                ), body
            else:
                assert any(
                    e["type"] == "RankingSubmitted"
                    and e["user_id"] == author
                    and e["data"]["parent_id"] == task["ranking_parent_id"]
                    for e in tree_events(task["message_tree_id"])
                ), body
        # the last answers before the kill, sent again: the same answer, nothing recorded
        head = c.get("/health").json()["log_position"]
        for task, body in load.acked[-2 * THREADS :]:
            r = c.post("/api/v1/tasks/interaction", json=body)
            assert r.status_code == 200 and r.json() == {"type": "task_done", "id": task["id"]}, (
                body,
                r.text,
            )
        assert c.get("/health").json()["log_position"] == head
        deadline = time.monotonic() + 30
        while True:  # the restarted server's read models catch up with the log
            health = c.get("/health").json()
            if health["readmodel_position"] >= health["log_position"]:
                break
            assert time.monotonic() < deadline, health
            time.sleep(0.05)


def test_kill_9_under_load_loses_no_acknowledged_interaction(tmp_path: Path):
    load = _run_until_killed(tmp_path)
    kinds = {body["type"] for _, body in load.acked}
    print(
        f"{len(load.acked)} interactions acknowledged before the kill: "
        f"{sorted(kinds)}; {next(load.ids)} cycles started"
    )
    assert len(load.acked) >= 30 and {"text_reply_to_message", "text_labels"} <= kinds, (
        len(load.acked),
        kinds,
    )
    assert not load.server_errors, load.server_errors[:3]
    if not log_helpers.on_postgres(tmp_path):
        with sqlite3.connect(tmp_path / "events.sqlite") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    [(count, first, last)] = log_helpers.read(
        tmp_path, "SELECT count(*), min(rowid), max(rowid) FROM stored_events"
    )
    assert (first, last) == (1, count), (count, first, last)  # no position lost or skipped
    with server(tmp_path, DATAENGINE_SYNCHRONOUS="NORMAL") as (url, _):
        _check_acknowledged(url, load)
    # stopped: the live read models hold still while they are compared with a rebuild
    [result] = replay(tmp_path, [read_model])
    assert result.error is None and result.differences == 0, (
        result.only_live[:3],
        result.only_rebuilt[:3],
    )
    assert result.rows > 0
