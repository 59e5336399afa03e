"""`dataengine users create-admin|set-role`: web accounts from the command line.

The admin account is an ordinary web account (an Account and a User of the built-in
web client) with the role ``admin``; the client is registered here too, so this works
before the server ever ran.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from api.cli import add_data_option, fail


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("users", help="web accounts (admin, roles)").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    admin = group.add_parser("create-admin", help="create a web account with the admin role")
    add_data_option(admin)
    admin.add_argument("--username", required=True)
    admin.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (scripts)"
    )
    admin.set_defaults(handler=create_admin)
    role = group.add_parser("set-role", help="make an account annotator, moderator or admin")
    add_data_option(role)
    role.add_argument("--username", required=True)
    role.add_argument("--role", required=True, choices=["annotator", "moderator", "admin"])
    role.set_defaults(handler=set_role)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit(fail("the two passwords differ"))
    return first


def create_admin(args: argparse.Namespace) -> int:
    from api.bootstrap import data_dir, load_config, open_app
    from api.web.security import derived_key, hash_password, load_secret
    from domain.model.account import check_password, check_username
    from domain.service import accounts

    check_username(args.username)
    password = _password(args)
    check_password(password, args.username)
    folder = data_dir(args.data)
    app = open_app(folder, load_config(folder))
    try:
        key = derived_key(load_secret(folder), "dataengine web client")
        client_id, _ = app.register_client(
            name="web app", api_key=key, trusted=True, frontend_type="web"
        )
        accounts.register_account(
            app,
            client_id=client_id,
            username=args.username,
            password_hash=hash_password(password),
            role="admin",
        )
    finally:
        app.close()
    print(f"admin account {args.username!r} created; sign in at the web app's /signin")
    return 0


def set_role(args: argparse.Namespace) -> int:
    from api.bootstrap import data_dir, load_config, open_app
    from domain.service import accounts

    folder = data_dir(args.data)
    app = open_app(folder, load_config(folder))
    try:
        accounts.change_role(app, username=args.username, role=args.role)
    finally:
        app.close()
    print(f"{args.username} is now {args.role}")
    return 0
