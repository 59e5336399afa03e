"""`dataengine projections status|rebuild|processes`: how far the read models are, replaying
them, and running the processes that follow them (task expiry, backlog activation, lottery)."""

from __future__ import annotations

import argparse

from api.cli import add_data_option
from projections.rebuild import BATCH_SIZE


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser(
        "projections", help="read models built from the event log"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    status = group.add_parser("status", help="log position vs each projection's position")
    add_data_option(status)
    status.set_defaults(handler=show_status)
    rebuild = group.add_parser("rebuild", help="drop the read models and replay the whole log")
    add_data_option(rebuild)
    rebuild.add_argument(
        "--batch-size",
        type=int,
        default=BATCH_SIZE,
        help="events per read-model transaction (default %(default)s)",
    )
    rebuild.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes to split the read models between (default: one per "
        "idle core; 1: in this process)",
    )
    rebuild.set_defaults(handler=run_rebuild)
    processes = group.add_parser(
        "processes", help="expire tasks, activate backlog trees, draw the prompt lottery"
    )
    add_data_option(processes)
    processes.add_argument(
        "--once",
        action="store_true",
        help="one round and exit: expiry, the backlog floor and the lottery "
        "(backlog draws are for transitions logged while the processes run); "
        "default: a round every --interval seconds",
    )
    processes.add_argument(
        "--interval", type=float, default=5.0, help="seconds between rounds (default %(default)s)"
    )
    processes.add_argument("--seed", type=int, default=None, help="seed of the random draws")
    processes.set_defaults(handler=run_processes)


def show_status(args: argparse.Namespace) -> int:
    from api.bootstrap import data_dir
    from api.storage.logdb import log_location
    from projections.log import StoreLog
    from projections.store import READMODEL_FILE, ReadModel

    folder = data_dir(args.data)
    head = StoreLog(log_location(folder)).head()
    path = folder / READMODEL_FILE
    positions = ReadModel(path).positions() if path.exists() else {}
    print(f"log position: {head}")
    if not positions:
        print("no read model yet (run `dataengine projections rebuild`)")
    for name, position in positions.items():
        print(f"{name:>10}: {position:>10}  behind by {head - position}")
    return 0


def run_rebuild(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from api.bootstrap import data_dir
    from api.storage.logdb import log_location
    from projections.log import StoreLog
    from projections.rebuild import rebuild
    from projections.store import READMODEL_FILE

    folder = data_dir(args.data)
    log = StoreLog(log_location(folder))
    with tqdm(total=log.head(), unit="ev", unit_scale=True, desc="rebuild") as bar:
        events, seconds = rebuild(
            log,
            folder / READMODEL_FILE,
            batch_size=args.batch_size,
            progress=bar.update,
            workers=getattr(args, "workers", None),
        )
    rate = events / seconds if seconds > 0 else 0.0
    print(
        f"rebuilt {READMODEL_FILE} from {events} events in {seconds:.2f} s ({rate:,.0f} events/s)"
    )
    return 0


def run_processes(args: argparse.Namespace) -> int:
    import random
    import sys
    import time

    from tqdm import tqdm

    from api.bootstrap import data_dir, load_config, open_app
    from api.cli import fail
    from api.storage.logdb import log_location
    from domain.service.processes import ProcessLoop, Sweep
    from projections.log import StoreLog
    from projections.runner import ProjectionRunner
    from projections.store import READMODEL_FILE

    if args.interval <= 0:
        return fail("--interval must be positive")
    folder = data_dir(args.data)
    app = open_app(folder, load_config(folder))
    runner = ProjectionRunner(StoreLog(log_location(folder)), folder / READMODEL_FILE)
    loop = ProcessLoop(app, runner, interval=args.interval, rng=random.Random(args.seed))

    def report(sweep: Sweep, quiet: bool = False) -> None:
        expired = sum(len(ids) for ids in sweep.expired.values())
        if quiet and not (expired or sweep.backlog or sweep.lottery):
            return  # a round with nothing to do says nothing
        print(
            f"expired {expired} task(s) of {len(sweep.expired)} user(s); activated "
            f"{len(sweep.backlog)} backlog tree(s); drew {len(sweep.lottery)} prompt(s)",
            flush=True,
        )

    try:
        behind = runner.log.head() - runner.position
        with tqdm(
            total=behind,
            unit="ev",
            unit_scale=True,
            desc="read models",
            file=sys.stderr,
            disable=behind == 0,
        ) as bar:
            runner.run_once(progress=bar.update)
        if args.once:
            report(loop.run_once())
            return 0
        print(f"processes: a round every {args.interval:g} s (Ctrl-C stops)", flush=True)
        while True:
            report(loop.run_once(), quiet=True)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        loop.stop()
        runner.close()
        app.close()
