"""`dataengine projections status|rebuild`: how far the read models are, and replaying them."""

from __future__ import annotations

import argparse

from api.cli import add_data_option
from projections.rebuild import BATCH_SIZE


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("projections", help="read models built from the event log").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    status = group.add_parser("status", help="log position vs each projection's position")
    add_data_option(status)
    status.set_defaults(handler=show_status)
    rebuild = group.add_parser("rebuild", help="drop the read models and replay the whole log")
    add_data_option(rebuild)
    rebuild.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                         help="events per read-model transaction (default %(default)s)")
    rebuild.set_defaults(handler=run_rebuild)


def show_status(args: argparse.Namespace) -> int:
    from api.storage import EVENTS_FILE, data_dir
    from projections.log import SQLiteLog
    from projections.store import READMODEL_FILE, ReadModel

    folder = data_dir(args.data)
    head = SQLiteLog(folder / EVENTS_FILE).head()
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

    from api.storage import EVENTS_FILE, data_dir
    from projections.log import SQLiteLog
    from projections.rebuild import rebuild
    from projections.store import READMODEL_FILE

    folder = data_dir(args.data)
    log = SQLiteLog(folder / EVENTS_FILE)
    with tqdm(total=log.head(), unit="ev", unit_scale=True, desc="rebuild") as bar:
        events, seconds = rebuild(log, folder / READMODEL_FILE, batch_size=args.batch_size,
                                  progress=bar.update)
    rate = events / seconds if seconds > 0 else 0.0
    print(f"rebuilt {READMODEL_FILE} from {events} events in {seconds:.2f} s ({rate:,.0f} events/s)")
    return 0
