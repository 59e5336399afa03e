"""Latency of task availability and task hand-out on a big read model.

    python bench/availability.py --data DIR        # a store filled by bench/crowd.py / replay.py
    python bench/availability.py --trees 300       # grow one first, in a temporary folder

The read model is (re)built from the store's log if it is missing or behind. Then, for
users drawn at random, at the moment of the log's last task:
  availability   projections.availability.availability(): the three pool queries and the
                 counts (OA's /tasks/availability)
  hand-out read  what Handout.request reads and decides for a `random` request: the pools,
                 the weighted choice, the payload (the conversation from the read model)
  hand-out       Handout.request whole: the above plus recording the task on the user
                 (DataEngine.issue_task, a command on a copy of the store; the copy is
                 synced like a live store unless --fast-commit)
p50 / p99 / max in ms over --n calls each, wall clock and CPU time of this process (on a
shared machine the wall clock also counts waiting for a core; the fsync of a recorded
task is wall time only). Users' aggregates are loaded before timing, as
a running server has them in its cache. The hand-out's task is skipped right after, untimed,
so no user reaches the pending-task limit.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.bootstrap import open_app  # noqa: E402
from api.storage.events import EVENTS_FILE  # noqa: E402
from bench import crowd  # noqa: E402
from domain.model.errors import DomainError, TaskNotAvailableError  # noqa: E402
from domain.model.task_types import TaskType  # noqa: E402
from domain.service.handout import Handout, choose, payload_for  # noqa: E402
from projections import availability as av  # noqa: E402
from projections.log import SQLiteLog  # noqa: E402
from projections.rebuild import rebuild  # noqa: E402
from projections.store import ReadModel  # noqa: E402

READMODEL = "bench-readmodel.sqlite"


def percentiles(ms: list[float]) -> str:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):5.2f}  p99 {p99:5.2f}  max {ms[-1]:6.2f}"


def report(name: str, wall: list[float], cpu: list[float], note: str = "") -> None:
    print(f"{name:14} wall ms {percentiles(wall)} | cpu ms {percentiles(cpu)}{note}")


def timed(n: int, call: Callable[[int], object]) -> tuple[list[float], list[float], int]:
    """Wall and CPU milliseconds per call; calls that find no task count as misses."""
    wall, cpu, misses = [], [], 0
    for i in range(n):
        w, c = time.perf_counter(), time.process_time()
        try:
            call(i)
        except TaskNotAvailableError:
            misses += 1
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    return wall, cpu, misses


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", default=None)
    parser.add_argument("--trees", type=int, default=300, help="ready trees to grow (no --data)")
    parser.add_argument("--n", type=int, default=1000, help="timed calls per variant")
    parser.add_argument("--users", type=int, default=200, help="users drawn from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fast-commit",
        action="store_true",
        help="record tasks with synchronous=NORMAL (no fsync per command)",
    )
    args = parser.parse_args()

    folder = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="dataengine-avail-"))
    if not (folder / EVENTS_FILE).exists():
        crowd.build(folder, args.trees)
    log = SQLiteLog(folder / EVENTS_FILE)
    readmodel = ReadModel(folder / READMODEL)
    positions = readmodel.positions() if readmodel.path.exists() else {}
    if not positions or min(positions.values()) < log.head():
        events, seconds = rebuild(log, readmodel.path)
        print(f"read model rebuilt: {events:,} events in {seconds:.1f} s")
        readmodel = ReadModel(folder / READMODEL)
    conn = readmodel.reader()
    config = crowd.crowd_config()
    (last,) = conn.execute("SELECT max(issued_at) FROM tasks").fetchone()
    now = datetime.fromtimestamp(last, UTC) + timedelta(seconds=1)
    states = dict(conn.execute("SELECT state, count(*) FROM trees GROUP BY state"))
    sizes = {
        t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("messages", "tasks", "labels")
    }
    print(
        f"read model: {sum(states.values()):,} trees {states}; "
        + ", ".join(f"{n:,} {t}" for t, n in sizes.items())
    )

    rng = random.Random(args.seed)
    everyone = [UUID(u) for (u,) in conn.execute("SELECT user_id FROM users ORDER BY user_id")]
    users = rng.sample(everyone, min(args.users, len(everyone)))
    draw = [rng.choice(users) for _ in range(args.n)]

    # availability: reads only
    av.availability(conn, config, "en", draw[0], now)  # warm the page cache
    wall, cpu, _ = timed(args.n, lambda i: av.availability(conn, config, "en", draw[i], now))
    report("availability", wall, cpu)

    # hand-out, read side
    choice_rng = random.Random(args.seed)

    def read_side(i: int) -> None:
        pools = av.pools(conn, config, "en", draw[i], now)
        choice = choose(pools, config, TaskType.RANDOM, choice_rng)
        payload_for(conn, config, choice, choice_rng)

    wall, cpu, misses = timed(args.n, read_side)
    report("hand-out read", wall, cpu, f"  ({misses} found nothing)")

    # hand-out, whole: on a copy of the store, since it records tasks
    with tempfile.TemporaryDirectory(prefix="dataengine-avail-copy-") as scratch:
        shutil.copy(folder / EVENTS_FILE, Path(scratch) / EVENTS_FILE)
        app = open_app(Path(scratch), config, synchronous="NORMAL" if args.fast_commit else None)
        for user in users:
            app.get_user(user)  # a running server has its users cached
        handout = Handout(app, lambda: conn, random.Random(args.seed), clock=lambda: now)
        handed: list[tuple[UUID, UUID]] = []

        def request(i: int) -> None:
            task = handout.request(draw[i], TaskType.RANDOM, "en")
            handed.append((draw[i], task.id))

        wall, cpu = [], []
        misses = refused = 0
        for i in range(args.n):
            w, c = time.perf_counter(), time.process_time()
            try:
                request(i)
            except TaskNotAvailableError:
                misses += 1
            except DomainError:
                refused += 1
            cpu.append((time.process_time() - c) * 1000)
            wall.append((time.perf_counter() - w) * 1000)
            while handed:
                user, task_id = handed.pop()
                app.nack_task(user_id=user, task_id=task_id)
        sync = "synchronous=NORMAL" if args.fast_commit else "fsync per command"
        report("hand-out", wall, cpu, f"  ({misses} found nothing, {refused} refused; {sync})")
    print(f"store: {folder}")


if __name__ == "__main__":
    main()
