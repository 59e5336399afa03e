"""`dataengine serve`: the web app and the HTTP API (uvicorn), in one process or several.

``--workers N`` runs N server processes on one store (uvicorn's workers share the
listening socket; each process follows the log into read models of its own, and the
work only one may do runs under leases: api.http.scaleout). ``--shared`` marks a single
process that is one of several nodes on one PostgreSQL store.
"""

from __future__ import annotations

import argparse
import os

from api.cli import add_data_option, fail


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the web app and the HTTP API (uvicorn)")
    add_data_option(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--no-signup", action="store_true", help="turn web sign-up off ($DATAENGINE_WEB_SIGNUP)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes on the one store (default 1)",
    )
    serve.add_argument(
        "--shared",
        action="store_true",
        help="other nodes serve the same PostgreSQL store ($DATAENGINE_SHARED; implied by --workers > 1)",
    )
    serve.set_defaults(handler=run_server)


def run_server(args: argparse.Namespace) -> int:
    import uvicorn

    from api.bootstrap import check_storage, data_dir
    from api.server import create_server
    from api.web.site import SIGNUP_ENV

    if args.workers < 1:
        return fail(f"--workers must be at least 1, not {args.workers}")
    folder = data_dir(args.data)
    if args.workers == 1:
        if args.shared:
            os.environ["DATAENGINE_SHARED"] = "true"
        app = create_server(folder, signup=False if args.no_signup else None)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
        return 0
    check_storage(folder)  # said once, before any process starts
    # The worker processes build their app from the environment (api.server.from_env).
    os.environ.update({"DATAENGINE_DATA": str(folder.resolve()), "DATAENGINE_SHARED": "true"})
    if args.no_signup:
        os.environ[SIGNUP_ENV] = "false"
    uvicorn.run(
        "api.server:from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
    )
    return 0
