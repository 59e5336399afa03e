"""`dataengine store copy`: move an existing log into a PostgreSQL store.

Positions are kept (they become the notification ids), and the copy is proven at the end:
the audit hash chain (projections.audit.chain) over every row of the source and of the
destination must give the same digest, or the command fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from api.cli import fail


def register(sub: argparse._SubParsersAction) -> None:
    store = sub.add_parser("store", help="the event store: copy a log into PostgreSQL")
    commands = store.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    copy = commands.add_parser(
        "copy", help="copy a data folder's events.sqlite into an empty PostgreSQL store"
    )
    copy.add_argument("--from", dest="source", required=True, metavar="SQLITE_DIR")
    copy.add_argument("--to", dest="target", required=True, metavar="postgresql://...")
    copy.set_defaults(handler=run_copy)


def _digest(location: object) -> tuple[int, int, bytes]:
    """(rows, last position, chain digest) of the whole log at ``location``."""
    from projections.audit.chain import GENESIS, chain
    from projections.audit.record import open_log, scan

    log = open_log(location)  # type: ignore[arg-type]
    link, rows, last = GENESIS, 0, 0
    try:
        for batch in scan(log, 0):
            link = chain(batch, link)
            rows += len(batch)
            last = batch[-1][0]
    finally:
        if log is not None:
            log.close()
    return rows, last, link


def run_copy(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from api.storage.copy import CopyError, copy_log
    from api.storage.events import EVENTS_FILE
    from api.storage.logdb import describe
    from api.storage.pg_url import is_postgres

    if not is_postgres(args.target):
        return fail(f"--to must be a postgresql:// URL, not {args.target!r}")
    source = Path(args.source)
    if source.is_dir():
        source = source / EVENTS_FILE
    if not source.exists():
        return fail(f"no event store at {source}")
    target = describe(args.target)
    try:
        with tqdm(unit="ev", unit_scale=True, desc="copy", file=sys.stderr) as bar:
            copied, head = copy_log(source, args.target, progress=bar.update)
    except CopyError as e:
        return fail(str(e))
    except Exception as e:  # noqa: BLE001 - the database's own message, without a traceback
        return fail(f"cannot copy into {target}: {e}", 1)
    before, after = _digest(source), _digest(args.target)
    if before != after:
        return fail(
            f"the copy differs from its source: source {before[0]} rows up to "
            f"{before[1]}, digest {before[2].hex()}; copy {after[0]} rows up to {after[1]}, "
            f"digest {after[2].hex()}",
            1,
        )
    print(f"copied {copied} events (positions 1..{head}) from {source} to {target}")
    print(f"audit digest at position {head}: {after[2].hex()} (equal on both stores)")
    return _copy_images(source.parent, args.target)


def _copy_images(folder: Path, url: str) -> int:
    """The folder's images go along: on PostgreSQL they live beside the log."""
    from api.storage.uploads import copy_images

    blobs, tickets, altered = copy_images(folder, url)
    print(f"copied {blobs} image blobs and {tickets} upload tickets from {folder / 'blobs'}")
    if altered:
        return fail(f"altered image blobs, not copied: {', '.join(altered)}", 1)
    return 0
