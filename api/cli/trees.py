"""`dataengine tree show`: one tree now or as of a version/time; `config show`."""

from __future__ import annotations

import argparse
from uuid import UUID

import msgspec

from api.bootstrap import data_dir, load_config, open_app
from api.cli import add_data_option, fail
from domain.model.as_of import parse_as_of


def register(sub: argparse._SubParsersAction) -> None:
    tree = sub.add_parser("tree", help="read conversation trees").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    show = tree.add_parser("show", help="print a tree as JSON")
    add_data_option(show)
    show.add_argument("tree_id")
    show.add_argument("--as-of", default=None, help="a version number or an ISO time")
    show.set_defaults(handler=show_tree)

    config = sub.add_parser("config", help="configuration").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    cshow = config.add_parser("show", help="print the effective tree configuration")
    add_data_option(cshow)
    cshow.set_defaults(handler=show_config)


def show_tree(args: argparse.Namespace) -> int:
    try:
        tree_id = UUID(args.tree_id)
    except ValueError:
        return fail(f"not a tree id: {args.tree_id!r}")
    folder = data_dir(args.data)
    app = open_app(folder, load_config(folder))
    version, as_of = None, None
    if args.as_of:
        try:
            version, as_of = parse_as_of(args.as_of)
        except ValueError:
            return fail(f"--as-of takes a version or an ISO time, not {args.as_of!r}")
    tree = app.get_tree(tree_id, version=version, as_of=as_of)
    print(msgspec.json.format(msgspec.json.encode(tree.as_dict()).decode()))
    return 0


def show_config(args: argparse.Namespace) -> int:
    config = load_config(data_dir(args.data))
    print(msgspec.json.format(msgspec.json.encode(config).decode()))
    return 0
