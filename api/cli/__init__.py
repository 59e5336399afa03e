"""The `dataengine` command line. Each command group is a module with `register(sub)`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from domain.model.errors import DomainError

# Command groups, imported lazily so `dataengine --help` stays fast.
GROUPS = [
    "api.cli.clients",
    "api.cli.trees",
    "api.cli.serve",
    "api.cli.store",
    "api.cli.projections",
    "api.cli.simulate",
    "api.cli.export",
    "api.cli.datasets",
    "api.cli.audit",
    "api.cli.stats",
    "api.cli.train",
    "api.cli.models",
    "api.cli.prelabel",
    "api.cli.images_demo",
    "api.cli.flywheel",
    "api.cli.users",
]


def add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=os.environ.get("DATAENGINE_DATA", "data"),
        metavar="DIR",
        help="folder holding the event store and read models (default: $DATAENGINE_DATA or ./data)",
    )
    parser.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="the event log: postgresql://user:pass@host:port/db[?schema=s] "
        "(default: $DATAENGINE_STORE, else events.sqlite in --data)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataengine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in GROUPS:
        importlib.import_module(name).register(sub)
    return parser


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    before = os.environ.get("DATAENGINE_STORE")
    if getattr(args, "store", None):  # every reader of the log looks here (api.storage.logdb)
        os.environ["DATAENGINE_STORE"] = args.store
    try:
        return int(handler(args) or 0)
    except DomainError as e:
        return fail(f"{e.message} (error_code {int(e.error_code)})")
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        # A PostgreSQL store that is down or unreachable is a message, not a traceback.
        from api.storage.logdb import describe, store_url
        from api.storage.unreachable import store_unreachable

        if not store_unreachable(e):
            raise
        return fail(f"cannot reach the event store {describe(store_url() or '')}: {e}")
    finally:
        if before is None:
            os.environ.pop("DATAENGINE_STORE", None)
        else:
            os.environ["DATAENGINE_STORE"] = before


if __name__ == "__main__":
    sys.exit(main())
