"""Server time per web page: the task page, a ~30-message tree view and the dashboard.

    python -m bench.web [--data DIR] [--trees 1000] [--n 200]

Uses the store in DIR, or simulates one with ``dataengine simulate`` (--trees ready
trees) into a cache folder. Server time is measured inside the app (an ASGI wrapper
around the composed app: from the request to the last body byte), so the test client's
own cost is left out. Prints p50/p99 per page, the hand-out that precedes a first task
page, and the bytes a first task page transfers (HTML + CSS + JS).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GOAL_P99_MS, GOAL_BYTES = 20.0, 200_000


class Timed:
    """ASGI wrapper recording the server time of each HTTP request."""

    def __init__(self, app: Any):
        self.app, self.last = app, 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        await self.app(scope, receive, send)
        self.last = (time.perf_counter() - start) * 1000


def _store(args: argparse.Namespace) -> Path:
    folder = Path(args.data) if args.data else Path(".bench-cache") / f"web-{args.trees}"
    if not (folder / "events.sqlite").exists():
        print(f"simulating {args.trees} ready trees into {folder} ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "api.cli",
                "simulate",
                "--data",
                str(folder),
                "--trees",
                str(args.trees),
                "--users",
                "60",
                "--seed",
                "1",
            ],
            check=True,
        )
    return folder


def _pct(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values), values[min(len(values) - 1, int(len(values) * 0.99))]


def _report(name: str, values: list[float], goal: float | None = GOAL_P99_MS) -> None:
    p50, p99 = _pct(values)
    ratio = f"  p99/goal {p99 / goal:.2f}" if goal else ""
    print(f"{name:<26} n={len(values):<4} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms{ratio}")


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data")
    parser.add_argument("--trees", type=int, default=1000)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    folder = _store(args)

    from starlette.testclient import TestClient

    from api.http.ratelimit import RateLimits
    from api.server import create_server
    from domain.service import accounts

    app = create_server(folder, process_interval=0, rate_limits=RateLimits(enabled=False))
    timed = Timed(app)
    with TestClient(timed, follow_redirects=False) as c:
        service = app.state.service
        ready = (
            service.reader()
            .execute("SELECT count(*) FROM trees WHERE state = 'ready_for_export'")
            .fetchone()[0]
        )
        print(f"store: {folder}  ready trees {ready}  log position {service.head()}")
        if accounts.find_account(service.app, "benchadmin") is None:
            token = _csrf(c.get("/signup").text)
            c.post(
                "/signup",
                data={
                    "csrf": token,
                    "username": "benchadmin",
                    "password": "bench password",
                    "password2": "bench password",
                },
            )
            accounts.change_role(service.app, username="benchadmin", role="admin")
        c.cookies.clear()
        token = _csrf(c.get("/signin").text)
        c.post(
            "/signin", data={"csrf": token, "username": "benchadmin", "password": "bench password"}
        )
        token = _csrf(c.get("/terms").text)
        c.post("/terms", data={"csrf": token, "accept": "yes"})

        handout, page, first_bytes = [], [], 0
        # a skip hands out the next task at once ("next task" flow): skip + hand-out timed
        r = c.post("/tasks/next", data={"csrf": token, "type": "random", "lang": "en"})
        for _ in range(args.n):
            handout.append(timed.last)
            url = r.headers.get("location", "")
            if not url.startswith("/tasks/"):
                found = re.findall('error-message">([^<]*)', r.text) or [url]
                print(f"no task handed out ({r.status_code}): {found}")
                break
            body = c.get(url)
            page.append(timed.last)
            if not first_bytes:
                first_bytes = len(body.content) + sum(
                    len(c.get(s).content) for s in ("/static/app.css", "/static/app.js")
                )
            r = c.post(url.split("?")[0] + "/skip", data={"csrf": token})
        tree = (
            service.reader()
            .execute(
                "SELECT tree_id, message_count FROM trees ORDER BY abs(message_count - 30) LIMIT 1"
            )
            .fetchone()
        )
        tree_times, dash = [], []
        for _ in range(args.n):
            c.get(f"/mod/trees/{tree[0]}")
            tree_times.append(timed.last)
        for _ in range(max(args.n // 4, 10)):
            c.get("/dashboard")
            dash.append(timed.last)
    _report("skip + next hand-out", handout, None)
    _report("task page (GET)", page)
    _report(f"tree view ({tree[1]} msgs)", tree_times)
    _report("dashboard", dash)
    print(
        f"first task page transfer: {first_bytes} bytes (goal < {GOAL_BYTES}, ratio {first_bytes / GOAL_BYTES:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
