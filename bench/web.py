"""Server time per web page on a store with >= 1,000 ready trees: the task page (one per
task type handed out), the tree view of a 30-message tree and the dashboard; the skip +
next hand-out; the bytes a first task page transfers (goal: p99 < 20 ms, < 200 KB).

    python -m bench.web [--trees 1000] [--rounds 5] [--n 40] [--data DIR]

The store is made of generated OA-export trees (bench.datasets.generated_trees: ~10
messages, ranked and reviewed) loaded by the tree import, plus one 30-message ready tree
and --growing trees still growing (unreviewed replies) or waiting for rankings, so that
the hand-out gives every kind of task. It is cached with its read models in
.bench-cache/web-N-G and copied to a temporary folder for each run, so every run starts
from the same log (--data: another store, copied too).

Server time is measured inside the process: an ASGI wrapper around the composed app
records the time from the request to the last body byte (the test client's own cost is
left out), and the process's CPU time over the same span (not inflated by other
processes on a shared machine). Pages are requested interleaved, each twice in a row
per step: as a first view (the app's caches dropped just before: rendered markdown, the
training status), then again; --n steps per round, and each figure is the median over --rounds
rounds of that round's p50 / p99. Read the ratios, not the third digit.

To compare with an older commit: ``git archive COMMIT | tar -x -C DIR``, copy this file
into DIR/bench and run it there with ``--data .bench-cache/web-1000-60`` (same store).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.datasets import generated_trees  # noqa: E402

GOAL_P99_MS, GOAL_BYTES = 20.0, 200_000
PASSWORD = "bench password"


class Timed:
    """ASGI wrapper recording the server time of each HTTP request (ms): wall clock, and
    the process's CPU time (all its threads) over the same span, which other processes'
    load on a shared machine does not inflate."""

    def __init__(self, app: Any):
        self.app, self.last, self.cpu = app, 0.0, 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, cpu = time.perf_counter(), time.process_time()
        await self.app(scope, receive, send)
        self.last = (time.perf_counter() - start) * 1000
        self.cpu = (time.process_time() - cpu) * 1000


# ---------------------------------------------------------------- the store
def thirty_message_tree(seed: int = 30) -> dict[str, Any]:
    """A ready tree of exactly 30 messages: 3 ranked replies, each answered twice, each of
    those answered by 3 ranked replies (1 + 3 + 6 + 18), and 2 more turns on one branch."""
    rng = random.Random(seed)
    ids = iter(lambda: str(UUID(int=rng.getrandbits(128), version=4)), None)

    def node(role: str, parent: str | None, rank: int | None, replies: list[Any]) -> Any:
        words = " ".join(
            rng.choice(("why", "the", "tree", "answer", "**bold**")) for _ in range(40)
        )
        m = {
            "message_id": next(ids),
            "parent_id": parent,
            "text": words,
            "role": role,
            "lang": "en",
            "review_count": 3,
            "review_result": True,
            "rank": rank,
            "emojis": {"+1": 2},
        }
        m["replies"] = [build(m["message_id"]) for build in replies]
        return m

    def assistant(rank: int | None, replies: list[Any]) -> Any:
        return lambda parent: node("assistant", parent, rank, replies)

    def prompter(replies: list[Any]) -> Any:
        return lambda parent: node("prompter", parent, None, replies)

    leaf3 = [assistant(r, []) for r in range(3)]
    longer = [assistant(0, [prompter([assistant(None, [])])]), assistant(1, []), assistant(2, [])]
    root = node(
        "prompter",
        None,
        None,
        [
            assistant(0, [prompter(longer), prompter(leaf3)]),
            assistant(1, [prompter(leaf3), prompter(leaf3)]),
            assistant(2, [prompter(leaf3), prompter(leaf3)]),
        ],
    )
    return {"message_tree_id": root["message_id"], "tree_state": "ready_for_export", "prompt": root}


def growing_trees(count: int, seed: int = 11) -> Iterator[dict[str, Any]]:
    """Trees still growing (some replies unreviewed) or waiting for rankings, nothing
    ranked: the hand-out has label, ranking and reply tasks to give."""
    for i, export in enumerate(generated_trees(count, seed)):
        ranking = i % 3 == 0  # every third tree waits for its rankings
        stack = [(export["prompt"], 0)]
        while stack:
            m, depth = stack.pop()
            m["rank"] = None
            if not ranking and depth >= 1 and (i + depth) % 3 == 0:
                m["review_result"], m["review_count"] = None, 0
            stack.extend((r, depth + 1) for r in m.get("replies", []))
        export["tree_state"] = "ranking" if ranking else "growing"
        yield export


def build_store(folder: Path, trees: int, growing: int) -> None:
    from itertools import chain

    from api.bootstrap import open_app
    from domain.service.oa_import import import_trees

    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    app = open_app(folder)
    try:
        stream = chain(generated_trees(trees), [thirty_message_tree()], growing_trees(growing))
        report = import_trees(app, stream, batch_size=250)
    finally:
        app.close()
    project(folder)
    print(
        f"imported {report.imported} trees ({len(report.failed)} failed) into {folder} "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    if report.failed:
        raise SystemExit(f"import failed: {report.failed[:3]}")


def project(folder: Path) -> None:
    """Bring the store's read models up to date, in place: they are cached with the log, so
    each run starts caught up, and a projection whose schema changed since the cache was
    made re-projects here once rather than during a run."""
    from api.storage.events import EVENTS_FILE
    from projections.log import SQLiteLog
    from projections.runner import ProjectionRunner
    from projections.store import READMODEL_FILE

    runner = ProjectionRunner(SQLiteLog(folder / EVENTS_FILE), folder / READMODEL_FILE)
    try:
        runner.run_once()
    finally:
        runner.close()


def _store(args: argparse.Namespace) -> Path:
    if args.data:
        return Path(args.data)
    folder = Path(".bench-cache") / f"web-{args.trees}-{args.growing}"
    if not (folder / "ready").exists():
        build_store(folder, args.trees, args.growing)
        (folder / "ready").write_text("imported\n")
    else:
        project(folder)
    return folder


# ---------------------------------------------------------------- the pages
def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


def _sign_in(c: Any, app: Any, name: str, role: str) -> str:
    """Sign up (or in) ``name`` with ``role``, accept the terms; the CSRF token."""
    from domain.service import accounts

    service = app.state.service
    c.cookies.clear()
    if accounts.find_account(service.app, name) is None:
        token = _csrf(c.get("/signup").text)
        data = {"csrf": token, "username": name, "password": PASSWORD, "password2": PASSWORD}
        c.post("/signup", data=data)
        if role != "annotator":
            accounts.change_role(service.app, username=name, role=role)
    else:
        token = _csrf(c.get("/signin").text)
        c.post("/signin", data={"csrf": token, "username": name, "password": PASSWORD})
    token = _csrf(c.get("/terms").text)
    c.post("/terms", data={"csrf": token, "accept": "yes"})
    return token


def _task_pages(c: Any, app: Any) -> dict[str, tuple[str, Any]]:
    """One open task per kind the hand-out gives, each held by its own annotator: the
    page's URL and that annotator's cookies."""
    pages: dict[str, tuple[str, Any]] = {}
    kinds = ("rank_assistant_replies", "label_assistant_reply", "assistant_reply")
    for kind in (*kinds, "initial_prompt"):
        token = _sign_in(c, app, f"bench_{kind}", "annotator")
        r = c.post("/tasks/next", data={"csrf": token, "type": kind, "lang": "en"})
        url = r.headers.get("location", "")
        if url.startswith("/tasks/"):
            pages[kind] = (url, dict(c.cookies))
        else:
            print(f"  no {kind} task handed out ({r.status_code})")
    return pages


def _first_page_bytes(c: Any, url: str) -> int:
    body = c.get(url).content
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', body.decode())
    return len(body) + sum(len(c.get(a).content) for a in assets)


def _handouts(c: Any, timed: Timed, token: str, n: int) -> list[float]:
    """Skip + next hand-out (one request: the nack, then the next task's hand-out)."""
    out: list[float] = []
    r = c.post("/tasks/next", data={"csrf": token, "type": "random", "lang": "en"})
    for _ in range(n):
        url = r.headers.get("location", "")
        if not url.startswith("/tasks/"):
            break
        r = c.post(url.split("?")[0] + "/skip", data={"csrf": token})
        out.append(timed.last)
    return out


def _drop_caches() -> None:
    """First views: forget the app's caches, where it has any (an older tree has none)."""
    try:
        from api.web.app import drop_caches
    except ImportError:
        return
    drop_caches()


Pages = dict[str, tuple[str, Any]]
Times = dict[str, list[tuple[float, float]]]


def _round(c: Any, timed: Timed, pages: Pages, n: int) -> Times:
    """n steps; each requests every page twice in a row: as a first view (the app's
    caches dropped just before), then again (what the first one cached is warm)."""
    times: Times = {}
    for _ in range(n):
        for name, (url, cookies) in pages.items():
            c.cookies = cookies
            for first_view in (True, False):
                if first_view:
                    _drop_caches()
                r = c.get(url)
                assert r.status_code == 200, (name, r.status_code, r.text[:300])
                key = f"{name}, first view" if first_view else f"{name}, again"
                times.setdefault(key, []).append((timed.last, timed.cpu))
    return times


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


Figures = dict[str, tuple[float, float, float, float, int]]  # p50, p99, cpu p50, cpu p99 (ms), n


def _measure(c: Any, timed: Timed, pages: Pages, rounds: int, n: int) -> Figures:
    _round(c, timed, pages, 3)  # warm up
    per_round: dict[str, list[tuple[float, float, float, float]]] = {}
    for _ in range(rounds):
        for name, values in _round(c, timed, pages, n).items():
            wall, cpu = [v[0] for v in values], [v[1] for v in values]
            figures = (_p(wall, 0.5), _p(wall, 0.99), _p(cpu, 0.5), _p(cpu, 0.99))
            per_round.setdefault(name, []).append(figures)
    return {
        name: (*(statistics.median(f[i] for f in figures) for i in range(4)), n * rounds)  # type: ignore[misc]
        for name, figures in sorted(per_round.items())
    }


def run(folder: Path, rounds: int, n: int) -> tuple[Figures, int]:
    from starlette.testclient import TestClient

    from api.http.ratelimit import RateLimits
    from api.server import create_server

    app = create_server(folder, process_interval=0, rate_limits=RateLimits(enabled=False))
    timed = Timed(app)
    with TestClient(timed, follow_redirects=False) as c:
        service = app.state.service
        reader = service.reader()
        ready = reader.execute(
            "SELECT count(*) FROM trees WHERE state = 'ready_for_export'"
        ).fetchone()[0]
        tree_id, size = reader.execute(
            "SELECT tree_id, message_count FROM trees ORDER BY abs(message_count - 30) LIMIT 1"
        ).fetchone()
        print(f"store: ready trees {ready}, log position {service.head()}", flush=True)
        tasks = _task_pages(c, app)
        first = next(iter(tasks.values()))
        c.cookies = first[1]
        first_bytes = _first_page_bytes(c, first[0])
        _sign_in(c, app, "bench_admin", "admin")
        staff = dict(c.cookies)
        pages = {f"task page ({k})": v for k, v in tasks.items()}
        pages[f"tree view ({size} msgs)"] = (f"/mod/trees/{tree_id}", staff)
        pages["dashboard"] = ("/dashboard", staff)
        results = _measure(c, timed, pages, rounds, n)
        token = _sign_in(c, app, "bench_skipper", "annotator")
        handouts = _handouts(c, timed, token, n)
        if handouts:
            results["skip + next hand-out"] = (
                _p(handouts, 0.5),
                _p(handouts, 0.99),
                0.0,
                0.0,
                len(handouts),
            )
    return results, first_bytes


def report(results: Figures, first_bytes: int) -> None:
    print(
        f"\n{'page':<48} {'n':>5} {'p50 ms':>7} {'p99 ms':>7} {'cpu p50':>8} {'cpu p99':>8} {'p99/goal':>9}"
    )
    for name, (p50, p99, cpu, cpu99, n) in results.items():
        ratio = "" if name.startswith("skip") else f"{p99 / GOAL_P99_MS:.2f}"
        cpu_text = f"{cpu:>8.2f} {cpu99:>8.2f}" if cpu else ""
        print(f"{name:<48} {n:>5} {p50:>7.2f} {p99:>7.2f} {cpu_text:>17} {ratio:>9}")
    print(
        f"{'first task page transfer (HTML + CSS + JS)':<48} {first_bytes:>7} bytes"
        f"{'':>26} {first_bytes / GOAL_BYTES:>9.2f}"
    )
    print(
        f"goals: p99 < {GOAL_P99_MS:.0f} ms server time per page, a first task page "
        f"< {GOAL_BYTES:,} bytes. cpu: this process's CPU time during the request (read it"
        " where other processes load the machine: they inflate the wall times)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", help="an existing store (copied, never changed)")
    parser.add_argument("--trees", type=int, default=1000, help="ready trees to generate")
    parser.add_argument("--growing", type=int, default=60, help="growing trees to generate")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=40, help="requests per page per round")
    args = parser.parse_args()
    source = _store(args)
    with tempfile.TemporaryDirectory(prefix="dataengine-web-bench-") as tmp:
        folder = Path(tmp) / "store"
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns("ready"))
        report(*run(folder, args.rounds, args.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
