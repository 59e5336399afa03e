"""Rebuild throughput: fill a store with a crowd, then time `projections rebuild`.

    python bench/replay.py --scale 0.02           # ~280 ready trees (oasst2 has ~14k)
    python bench/replay.py --trees 1650           # ~0.5M events
    python bench/replay.py --data DIR --reuse     # time rebuilds of an existing store

The log comes from bench/crowd.py: people driven straight through DataEngine commands
(hand-out payloads, acks, prompts, replies, reviews, rankings, skips, emojis, edits,
deletions: the events the simulator and a live service make), picking their targets from
the application's aggregates instead of the read model, so a big log takes minutes, not
hours. ``--simulator`` uses domain.service.simulator instead (slow; small runs only).

Each repeat times, interleaved so machine noise hits them alike:
  stock   the log read and decoded into domain events (eventsourcing's mapper, our codec)
          and nothing else: the floor a projection that decodes every event cannot beat
  core    rebuild of the messages, trees and users read models
  read    rebuild of the read models of issue 3: core plus user statistics, model
          statistics and annotator agreement
  all     rebuild of every registered read model (store.default_projections()), what
          `dataengine projections rebuild` does
each rebuild in one process (w=1) and split between worker processes (w=N, --workers).
Wall-clock and CPU time (this process and its workers) are both printed: on a shared
machine the wall clock also counts the time other processes hold the cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.bootstrap import open_app  # noqa: E402
from api.storage.events import EVENTS_FILE  # noqa: E402
from bench import crowd  # noqa: E402
from domain.model.config import TreeConfig  # noqa: E402
from domain.service.simulator import run_simulation  # noqa: E402
from projections.log import SQLiteLog  # noqa: E402
from projections.rebuild import BATCH_SIZE, rebuild  # noqa: E402
from projections.runner import ProjectionRunner  # noqa: E402
from projections.store import default_projections  # noqa: E402

OASST2_TREES = 14_000


def fill(folder: Path, args: argparse.Namespace) -> None:
    trees = args.trees or max(10, round(args.scale * OASST2_TREES))
    started = time.perf_counter()
    if args.simulator:
        config = TreeConfig(goal_tree_size=6, min_goal_tree_size=5, max_active_trees=50)
        app = open_app(folder, config)
        runner = ProjectionRunner(SQLiteLog(folder / EVENTS_FILE), folder / "sim-readmodel.sqlite")
        _, stats, _ = run_simulation(
            app, runner, trees=trees, users=args.users or 60, seed=args.seed
        )
        runner.close()
        how = f"simulator, {stats.steps} steps"
    else:
        made, _ = crowd.build(folder, trees, args.users, args.seed)
        how = f"crowd, {made.steps} steps, {len(made.people)} users"
    elapsed = time.perf_counter() - started
    head = SQLiteLog(folder / EVENTS_FILE).head()
    print(f"log: {trees} ready trees ({how}): {head:,} events in {elapsed:.0f} s")


def stock_decode(log: SQLiteLog, batch_size: int) -> int:
    position = done = 0
    while rows := log.read(position, batch_size):
        for row in rows:
            log.decode(row)
        done += len(rows)
        position = rows[-1][0]
    return done


READ_MODELS = ("messages", "trees", "users", "user_stats", "model_stats", "agreement")


def cpu_time() -> float:
    """CPU seconds of this process and of its finished children (rebuild workers)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=0.02,
        help="fraction of oasst2's ~14k ready trees to grow (default 0.02)",
    )
    parser.add_argument("--trees", type=int, default=None, help="ready trees (overrides --scale)")
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--simulator", action="store_true", help="fill with the slow simulator")
    parser.add_argument("--data", default=None)
    parser.add_argument("--reuse", action="store_true", help="do not fill; use the store as is")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument(
        "--only",
        choices=("stock", "core", "read", "all"),
        action="append",
        help="time only these variants (repeatable)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        action="append",
        help="worker processes per rebuild (repeatable; default: 1 and one per core)",
    )
    args = parser.parse_args()

    folder = Path(args.data or tempfile.mkdtemp(prefix="dataengine-replay-"))
    if not args.reuse:
        fill(folder, args)
    log = SQLiteLog(folder / EVENTS_FILE)
    workers = args.workers or sorted({1, os.cpu_count() or 1})
    variants = [
        (v, 0) if v == "stock" else (v, w)
        for v in args.only or ["stock", "core", "read", "all"]
        for w in ([0] if v == "stock" else workers)
    ]
    results: dict[tuple[str, int], list[tuple[float, float]]] = {v: [] for v in variants}
    events = log.head()
    for _ in range(args.repeat):
        for variant, n in variants:
            wall, cpu = time.perf_counter(), cpu_time()
            if variant == "stock":
                stock_decode(log, args.batch_size)
            else:
                projections = default_projections()
                if variant != "all":
                    keep = READ_MODELS[:3] if variant == "core" else READ_MODELS
                    projections = [p for p in projections if p.name in keep]
                rebuild(
                    log,
                    folder / f"bench-{variant}.sqlite",
                    projections=projections,
                    batch_size=args.batch_size,
                    workers=n,
                )
            results[variant, n].append((time.perf_counter() - wall, cpu_time() - cpu))
    print(
        f"{events:,} events, batch {args.batch_size}, median of {args.repeat} "
        f"(all runs in parentheses):"
    )
    for (variant, n), runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        name = variant if variant == "stock" else f"{variant} w={n}"
        print(
            f"  {name:9}  {events / wall:>9,.0f} events/s wall"
            f"  {events / cpu:>9,.0f} events/s cpu"
            f"  ({', '.join(f'{events / w / 1000:.0f}k' for w, _ in runs)})"
        )
    print(f"store: {folder}")


if __name__ == "__main__":
    main()
