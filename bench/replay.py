"""Rebuild throughput: fill a store with the simulator, then time `projections rebuild`.

    python bench/replay.py --trees 200            # quick run in a temporary folder
    python bench/replay.py --data DIR --reuse     # time rebuilds of an existing store

Prints events in the log, rebuild seconds and events/s (best of --repeat runs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.storage import EVENTS_FILE, open_app  # noqa: E402
from domain.config import TreeConfig  # noqa: E402
from projections.log import SQLiteLog  # noqa: E402
from projections.rebuild import rebuild  # noqa: E402
from projections.runner import ProjectionRunner  # noqa: E402
from projections.simulator import run_simulation  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--goal-tree-size", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None)
    parser.add_argument("--reuse", action="store_true", help="do not simulate; use the store as is")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()

    folder = Path(args.data or tempfile.mkdtemp(prefix="dataengine-bench-"))
    if not args.reuse:
        config = TreeConfig(goal_tree_size=args.goal_tree_size,
                            min_goal_tree_size=min(5, args.goal_tree_size), max_active_trees=50)
        app = open_app(folder, config)
        runner = ProjectionRunner(SQLiteLog(folder / EVENTS_FILE), folder / "sim-readmodel.sqlite")
        started = time.perf_counter()
        _, stats, _ = run_simulation(app, runner, trees=args.trees, users=args.users, seed=args.seed)
        runner.close()
        elapsed = time.perf_counter() - started
        print(f"simulated {args.trees} ready trees: {stats.steps} steps, {runner.position} events "
              f"in {elapsed:.1f} s ({stats.steps / elapsed:,.0f} tasks/s)")
    log = SQLiteLog(folder / EVENTS_FILE)
    best = None
    for _ in range(args.repeat):
        events, seconds = rebuild(log, folder / "bench-readmodel.sqlite", batch_size=args.batch_size)
        best = seconds if best is None else min(best, seconds)
    print(f"rebuild: {events} events, best of {args.repeat}: {best:.3f} s "
          f"= {events / best:,.0f} events/s (batch {args.batch_size})")
    print(f"store: {folder}")


if __name__ == "__main__":
    main()
