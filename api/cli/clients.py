"""`dataengine clients create|list`: API clients and their keys."""

from __future__ import annotations

import argparse

from api.bootstrap import data_dir, load_config, open_app
from api.cli import add_data_option


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("clients", help="manage API clients").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = group.add_parser("create", help="register a client and print its new API key")
    add_data_option(create)
    create.add_argument("--name", required=True)
    create.add_argument("--trusted", action="store_true", help="may moderate and administer")
    create.add_argument("--frontend-type", default=None)
    create.set_defaults(handler=create_client)


def create_client(args: argparse.Namespace) -> int:
    folder = data_dir(args.data)
    app = open_app(folder, load_config(folder))
    client_id, key = app.register_client(
        name=args.name, trusted=args.trusted, frontend_type=args.frontend_type
    )
    print(f"client_id: {client_id}")
    print(f"api_key:   {key}")
    print("Store the key now: only its hash is kept.")
    return 0
