"""Commands per second through DataEngine on a SQLite file, against the library's plain path.

Worker threads play users working on their own trees, each tree from prompt to
ready_for_export (bench/mix.py): prompt, 3 reviews, activation, replies and their
reviews, rankings. Every successful application command counts. Variants, run
interleaved in each repeat so machine noise hits them alike:

  engine xN      DataEngine via api.bootstrap.open_app, N threads (group commit shares fsyncs)
  engine x1      the same, one thread (every command commits alone), on a quarter of the trees
  engine xN nrm  N threads with DATAENGINE_SYNCHRONOUS=NORMAL (weaker: see api/storage.py)
  naive x1/xN    stock Application: repository.get + command + save, stock mapper, no cache

Rates are per command, and a command's cost depends on the size of its tree, not on how
many trees a run has, so the slower variants run fewer trees. The disk's fsync latency is
probed before every run and printed: on a shared machine it swings between ~0.2 ms and
~4 ms, and with synchronous=FULL it bounds what any variant can do (N threads can have at
most N commands in one commit, so about N / fsync commands per second).

After each run the store is reopened and checked: stored rows = setup rows + the events
the saves reported, every reported position is a distinct row of its own tree, and every
tree is ready_for_export with its planned messages accepted and ranked as planned.
Then the stock JSON mapper and our msgspec mapper encode/decode that run's events.

    .venv/bin/python bench/commands.py [--trees 320] [--threads 16] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from api.bootstrap import open_app  # noqa: E402
from api.storage.codec import MsgspecMapper  # noqa: E402
from api.storage.events import EVENTS_FILE  # noqa: E402
from bench.mix import REVIEW_LABELS, Step, TreePlan, plan_tree, text_for  # noqa: E402
from bench.naive import NAIVE_FILE, NaiveApp, NaiveDriver, naive_env, stock_mapper  # noqa: E402
from domain.model.actor import SYSTEM, Actor  # noqa: E402
from domain.model.config import TreeConfig  # noqa: E402
from domain.model.errors import DomainError  # noqa: E402

POOL = 12  # users per worker thread: a user does one thing at a time, as over HTTP


class BenchFailure(RuntimeError):
    """A run did not leave the store in the state its commands reported."""


@dataclass
class RunResult:
    commands: int
    events: int
    wall: float
    latencies: list[float]
    batch: float | None  # mean requests per group commit
    fsync: float  # the disk's fsync latency just before the run (s): the noise to read by

    @property
    def cps(self) -> float:
        return self.commands / self.wall

    @property
    def eps(self) -> float:
        return self.events / self.wall

    def pct(self, q: float) -> float:
        return self.latencies[min(len(self.latencies) - 1, int(q * len(self.latencies)))]


class EngineDriver:
    """Runs one plan step as the HTTP layer would: one DataEngine command."""

    def __init__(self, app: Any, users: list[Actor]):
        self.app = app
        self.users = users

    def __call__(self, tree_id: UUID, step: Step) -> int | None:
        app = self.app
        actor = self.users[step.user] if step.user >= 0 else SYSTEM
        kind = step.kind
        if kind == "review":
            return app.submit_labels(
                actor=actor, tree_id=tree_id, message_id=step.message_id, labels=REVIEW_LABELS
            ).position
        if kind == "reply":
            return app.add_reply(
                actor=actor,
                tree_id=tree_id,
                parent_id=step.parent_id,
                text=text_for("reply"),
                message_id=step.message_id,
            ).position
        if kind == "ranking":
            return app.submit_ranking(
                actor=actor,
                tree_id=tree_id,
                parent_id=step.parent_id,
                ranked_message_ids=list(step.ranked),
            ).position
        if kind == "prompt":
            return app.create_prompt(
                actor=actor, text=text_for("prompt"), message_id=tree_id
            ).position
        if kind == "activate":
            return app.activate_tree(tree_id=tree_id)
        raise ValueError(f"unknown step {kind}")


def _count_saves(app: Any) -> list[int]:
    """Wrap app.save to add up the events each save reports as recorded."""
    total = [0]
    lock = threading.Lock()
    save = app.save

    def counted(*objs: Any, **kwargs: Any) -> Any:
        recordings = save(*objs, **kwargs)
        with lock:
            total[0] += len(recordings)
        return recordings

    app.save = counted
    return total


def _drive(
    drivers: list[Callable[[UUID, Step], int | None]], work: list[list[TreePlan]]
) -> tuple[float, list[float], list[tuple[UUID, int]]]:
    """Run every worker's plans on its own thread; wall time from a common start."""
    latencies: list[list[float]] = [[] for _ in work]
    positions: list[list[tuple[UUID, int]]] = [[] for _ in work]
    errors: list[BaseException] = []
    start = threading.Barrier(len(work) + 1)

    def worker(w: int) -> None:
        lat, pos, clock, driver = latencies[w], positions[w], time.perf_counter, drivers[w]
        start.wait()
        try:
            for plan in work[w]:
                for step in plan.steps:
                    t = clock()
                    position = driver(plan.tree_id, step)
                    lat.append(clock() - t)
                    if position is None:
                        raise BenchFailure(f"{step.kind} on {plan.tree_id} recorded nothing")
                    pos.append((plan.tree_id, position))
        except BaseException as e:  # noqa: BLE001 - reported after the run
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(len(work))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise BenchFailure(f"{len(errors)} worker(s) failed: {errors[0]!r}") from errors[0]
    return wall, sorted(x for lat in latencies for x in lat), [p for pos in positions for p in pos]


def fsync_probe(folder: Path, n: int = 30) -> float:
    """Median time of a 4 KiB write + fdatasync (what SQLite calls) in the run's folder."""
    path = folder / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        times = []
        for _ in range(n):
            os.pwrite(fd, b"x" * 4096, 0)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times)


def _plans(key: str, config: TreeConfig, trees: int, threads: int) -> list[list[TreePlan]]:
    return [
        [plan_tree(f"{key}/{t}", config, POOL, start=t) for t in range(w, trees, threads)]
        for w in range(threads)
    ]


def _rows(db: Path) -> dict[int, str]:
    with sqlite3.connect(db) as con:
        return dict(con.execute("SELECT rowid, originator_id FROM stored_events"))


def verify(
    db: Path,
    work: list[list[TreePlan]],
    positions: list[tuple[UUID, int]],
    events: int,
    setup_rows: int,
    get_tree: Callable[[UUID], Any],
) -> None:
    rows = _rows(db)
    if len(rows) != setup_rows + events:
        raise BenchFailure(f"{len(rows)} rows stored, expected {setup_rows} + {events} reported")
    per_tree = Counter(rows.values())
    last: dict[UUID, int] = {}
    if len({p for _, p in positions}) != len(positions):
        raise BenchFailure("two commands reported the same log position")
    for tree_id, position in positions:
        if rows.get(position) != tree_id.hex:
            raise BenchFailure(f"position {position} is not an event of tree {tree_id}")
        if position <= last.get(tree_id, 0):
            raise BenchFailure(f"positions of tree {tree_id} go backwards")
        last[tree_id] = position
    for plan in (p for plans in work for p in plans):
        tree = get_tree(plan.tree_id)
        problem = None
        if tree.state.value != "ready_for_export":
            problem = f"state {tree.state.value}"
        elif set(tree.messages) != plan.message_ids:
            problem = "messages differ from the plan"
        elif not all(m.review_result is True for m in tree.messages.values()):
            problem = "a message is not accepted"
        elif tree.version != per_tree[plan.tree_id.hex]:
            problem = f"version {tree.version} but {per_tree[plan.tree_id.hex]} rows"
        else:
            for order in plan.ranked_parents.values():
                if [tree.messages[c].rank for c in order] != list(range(len(order))):
                    problem = "ranks differ from the consensus of the plan"
        if problem:
            raise BenchFailure(f"tree {plan.tree_id}: {problem}")


def run_engine(
    config: TreeConfig,
    trees: int,
    threads: int,
    key: str,
    synchronous: str | None = None,
    codec: list[Any] | None = None,
) -> RunResult:
    folder = Path(tempfile.mkdtemp(prefix="bench-commands-"))
    try:
        app = open_app(folder, config, synchronous=synchronous)
        client_id, _ = app.register_client(name="bench")
        drivers = [
            EngineDriver(
                app,
                [
                    Actor(
                        app.ensure_user(
                            client_id=client_id, auth_method="local", username=f"w{w}u{i}"
                        ),
                        client_id,
                    )
                    for i in range(POOL)
                ],
            )
            for w in range(threads)
        ]
        setup_rows = app.recorder.max_notification_id() or 0
        total = _count_saves(app)
        work = _plans(key, config, trees, threads)
        fsync = fsync_probe(folder)
        wall, latencies, positions = _drive(drivers, work)
        stats = getattr(app.recorder, "stats", None)
        batch = stats["requests"] / stats["commits"] if stats and stats["commits"] else None
        app.close()
        reopened = open_app(folder, config)
        verify(folder / EVENTS_FILE, work, positions, total[0], setup_rows, reopened.get_tree)
        if codec is not None:
            codec.append(codec_costs(reopened))
        reopened.close()
        return RunResult(len(positions), total[0], wall, latencies, batch, fsync)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_naive(config: TreeConfig, trees: int, threads: int, key: str) -> RunResult:
    folder = Path(tempfile.mkdtemp(prefix="bench-naive-"))
    try:
        app = NaiveApp(env=naive_env(folder))
        drivers = [
            NaiveDriver(
                app, config, [Actor(UUID(int=w * POOL + i + 1), UUID(int=0)) for i in range(POOL)]
            )
            for w in range(threads)
        ]
        total = _count_saves(app)
        work = _plans(key, config, trees, threads)
        fsync = fsync_probe(folder)
        wall, latencies, positions = _drive(drivers, work)
        app.close()
        reopened = NaiveApp(env=naive_env(folder))
        verify(folder / NAIVE_FILE, work, positions, total[0], 0, reopened.repository.get)
        reopened.close()
        return RunResult(len(positions), total[0], wall, latencies, None, fsync)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def codec_costs(app: Any, limit: int = 20_000, passes: int = 3) -> dict[str, float]:
    """µs per event to encode/decode this run's events with the stock and msgspec mappers.

    Best of a few passes, with the garbage collector paused (as timeit does), so neither
    mapper pays for collections caused by the other's garbage.
    """
    stored = list(app.recorder.select_notifications(start=1, limit=limit))
    ours, stock = MsgspecMapper(transcoder=None), stock_mapper()  # type: ignore[arg-type]
    events = [ours.to_domain_event(s) for s in stored]
    costs: dict[str, float] = {}
    for _ in range(passes):
        for name, mapper in (("stock", stock), ("msgspec", ours)):
            gc.collect()
            gc.disable()
            try:
                t = time.perf_counter()
                encoded = [mapper.to_stored_event(e) for e in events]
                encode = time.perf_counter() - t
                t = time.perf_counter()
                decoded = [mapper.to_domain_event(s) for s in encoded]
                decode = time.perf_counter() - t
            finally:
                gc.enable()
            if any(vars(a) != vars(b) for a, b in zip(events, decoded)):
                raise BenchFailure(f"the {name} mapper does not round-trip the events")
            for key, value in ((f"{name} encode", encode), (f"{name} decode", decode)):
                costs[key] = min(costs.get(key, math.inf), value / len(events) * 1e6)
            costs[f"{name} bytes"] = sum(len(s.state) for s in encoded) / len(encoded)
            del encoded, decoded
    return costs


def _med(values: list[float]) -> float:
    return statistics.median(values)


def report(
    results: dict[str, list[RunResult]], codec: list[dict[str, float]], threads: int, repeat: int
) -> None:
    base = _med([r.cps for r in results["naive x1"]]) if "naive x1" in results else None
    print(f"\nmedians over {repeat} run(s); range in brackets\n")
    head = (
        f"{'variant':<16}{'commands/s':>11}{'(min-max)':>15}{'events/s':>10}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'batch':>7}{'x naive1':>9}{'fsync ms':>9}"
    )
    print(head)
    print("-" * len(head))
    for name, runs in results.items():
        cps = [r.cps for r in runs]
        batch = [r.batch for r in runs if r.batch is not None]
        print(
            f"{name:<16}{_med(cps):>11,.0f}{f'({min(cps):,.0f}-{max(cps):,.0f})':>15}"
            f"{_med([r.eps for r in runs]):>10,.0f}"
            f"{_med([r.pct(0.5) for r in runs]) * 1e3:>8.2f}"
            f"{_med([r.pct(0.99) for r in runs]) * 1e3:>8.2f}"
            f"{(f'{_med(batch):.1f}' if batch else '-'):>7}"
            f"{(f'{_med(cps) / base:.1f}' if base else '-'):>9}"
            f"{_med([r.fsync for r in runs]) * 1e3:>9.2f}"
        )
    n, one = f"engine x{threads}", "engine x1"
    if n in results and one in results and threads != 1:
        gain = _med([r.cps for r in results[n]]) / _med([r.cps for r in results[one]])
        print(f"\ngroup commit ({threads} threads vs 1): x{gain:.2f}")
    if codec:
        print("\nmapper cost per event (µs), this run's events:")
        for op in ("encode", "decode"):
            s = _med([c[f"stock {op}"] for c in codec])
            m = _med([c[f"msgspec {op}"] for c in codec])
            print(f"  {op}: stock json {s:.2f}  msgspec {m:.2f}  (stock/msgspec x{s / m:.2f})")
        print(
            f"  stored bytes: stock {_med([c['stock bytes'] for c in codec]):.0f}  "
            f"msgspec {_med([c['msgspec bytes'] for c in codec]):.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trees", type=int, default=320, help="trees per engine run")
    p.add_argument("--naive-trees", type=int, default=32, help="trees per naive run")
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--goal", type=int, default=None, help="goal tree size (OA default 12)")
    p.add_argument("--no-naive", action="store_true", help="skip the stock-library baseline")
    p.add_argument("--no-normal", action="store_true", help="skip the synchronous=NORMAL run")
    p.add_argument("--quick", action="store_true", help="small runs, one repeat")
    args = p.parse_args(argv)
    if args.quick:
        args.trees, args.naive_trees, args.repeat = 64, 8, 1
    config = (
        TreeConfig()
        if args.goal is None
        else TreeConfig(goal_tree_size=args.goal, min_goal_tree_size=min(5, args.goal))
    )
    n = args.threads
    if n < 1 or args.trees < 1 or args.repeat < 1:
        p.error("--threads, --trees and --repeat must be at least 1")
    variants: dict[str, Callable[[str, list[Any]], RunResult]] = {
        f"engine x{n}": lambda k, c: run_engine(config, args.trees, n, k, codec=c)
    }
    if n > 1:
        variants["engine x1"] = lambda k, c: run_engine(config, max(1, args.trees // 4), 1, k)
    if not args.no_normal:
        variants[f"engine x{n} nrm"] = lambda k, c: run_engine(config, args.trees, n, k, "NORMAL")
    if not args.no_naive:
        variants["naive x1"] = lambda k, c: run_naive(config, args.naive_trees, 1, k)
        if n > 1:
            variants[f"naive x{n}"] = lambda k, c: run_naive(config, args.naive_trees, n, k)
    steps = len(plan_tree("count", config, POOL).steps)
    print(
        f"{os.cpu_count()} cpus; goal tree size {config.goal_tree_size}: {steps} commands per "
        f"tree; trees per run: {args.trees} (engine xN), {max(1, args.trees // 4)} (engine x1), "
        f"{args.naive_trees} (naive)"
    )
    results: dict[str, list[RunResult]] = {name: [] for name in variants}
    codec: list[dict[str, float]] = []
    with tqdm(total=args.repeat * len(variants), desc="runs", leave=False) as bar:
        for r in range(args.repeat):
            for name, run in variants.items():
                try:
                    results[name].append(run(f"{r}/{name}", codec))
                except (BenchFailure, DomainError) as e:
                    bar.close()
                    print(f"FAILED {name} (repeat {r + 1}): {e}", file=sys.stderr)
                    return 1
                bar.update()
    report(results, codec, n, args.repeat)
    print(
        "\nverified: every run's store reopened with the reported events, positions and "
        "final tree states"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
