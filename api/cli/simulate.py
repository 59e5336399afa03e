"""`dataengine simulate`: a simulated crowd fills the store until N trees are ready."""

from __future__ import annotations

import argparse

from api.cli import add_data_option


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("simulate", help="simulated users grow trees until N are ready for export")
    add_data_option(sim)
    sim.add_argument("--trees", type=int, default=10, help="ready_for_export trees to reach")
    sim.add_argument("--users", type=int, default=30)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--lang", default="en")
    sim.add_argument(
        "--goal-tree-size",
        type=int,
        default=None,
        help="override the configured goal size (small values run faster)",
    )
    sim.set_defaults(handler=simulate)


def simulate(args: argparse.Namespace) -> int:
    import msgspec
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    from api.bootstrap import data_dir, load_config, open_app
    from api.cli import fail
    from api.storage.logdb import log_location
    from domain.service.simulator import run_simulation
    from projections.log import StoreLog
    from projections.runner import ProjectionRunner
    from projections.store import READMODEL_FILE

    if args.trees < 1 or args.users < 5:
        return fail("--trees must be >= 1 and --users >= 5")
    folder = data_dir(args.data)
    config = load_config(folder)
    if args.goal_tree_size is not None:
        size = args.goal_tree_size
        config = msgspec.structs.replace(
            config, goal_tree_size=size, min_goal_tree_size=min(size, config.min_goal_tree_size)
        )
    app = open_app(folder, config)
    runner = ProjectionRunner(StoreLog(log_location(folder)), folder / READMODEL_FILE)
    try:
        with tqdm(total=args.trees, unit="tree", desc="ready_for_export") as bar:
            sim, stats, seconds = run_simulation(
                app,
                runner,
                trees=args.trees,
                users=args.users,
                seed=args.seed,
                lang=args.lang,
                progress=lambda ready: bar.update(ready - bar.n),
            )
        states = sim.tree_states()
        events = runner.position
    finally:
        runner.close()
    console = Console()
    table = Table(title=f"trees ({args.lang})")
    table.add_column("state")
    table.add_column("trees", justify="right")
    for state, count in states.items():
        table.add_row(state, str(count))
    console.print(table)
    tasks = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_type.items()))
    console.print(
        f"{stats.tasks} tasks handed out ({tasks}); {stats.skipped} skipped, "
        f"{stats.refused} refused, {stats.unavailable} requests found nothing"
    )
    console.print(f"{stats.steps} steps in {seconds:.1f} s; log position {events}")
    ready = states.get("ready_for_export", 0)
    if ready < args.trees:
        return fail(f"stopped after {stats.steps} steps with {ready} of {args.trees} trees ready")
    return 0
