"""`dataengine serve`: the web app and the HTTP API on the embedded SQLite store."""

from __future__ import annotations

import argparse

from api.cli import add_data_option


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the web app and the HTTP API (uvicorn)")
    add_data_option(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--no-signup", action="store_true", help="turn web sign-up off ($DATAENGINE_WEB_SIGNUP)"
    )
    serve.set_defaults(handler=run_server)


def run_server(args: argparse.Namespace) -> int:
    import uvicorn

    from api.bootstrap import data_dir
    from api.server import create_server

    app = create_server(data_dir(args.data), signup=False if args.no_signup else None)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
