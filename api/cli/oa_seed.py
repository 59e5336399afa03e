"""`dataengine import oa-seed FILE`: Open-Assistant's development seed data
(domain.service.seed_import)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from api.cli import add_data_option, fail


def register_import(imp: argparse._SubParsersAction) -> None:
    seed = imp.add_parser(
        "oa-seed",
        help="Open-Assistant seed data: a JSON list of flat messages, parents first",
    )
    add_data_option(seed)
    seed.add_argument("file", metavar="FILE")
    seed.add_argument(
        "--user", default="oa-seed", help="the importing user the messages are recorded as"
    )
    seed.add_argument(
        "--client", default="oa-seed import", help="the importing client (registered disabled)"
    )
    seed.set_defaults(handler=import_oa_seed)


def import_oa_seed(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from api.bootstrap import data_dir, load_config, open_app
    from domain.model.errors import DomainError
    from domain.service.seed_import import import_seed, read_seed_file, seed_importer

    path = Path(args.file)
    if not path.is_file():
        return fail(f"no such file: {path}")
    folder = data_dir(args.data)
    app = open_app(folder, load_config(folder))
    try:
        try:
            trees = read_seed_file(path, args.client)
        except DomainError as e:
            return fail(f"{e.message}; nothing was imported")
        importer = seed_importer(app, client_name=args.client, username=args.user)
        messages = sum(len(t.messages) for t in trees)
        bar = tqdm(total=len(trees), unit="tree", desc="oa-seed", file=sys.stderr, disable=None)
        with bar:
            report = import_seed(app, trees, importer, progress=bar)
    finally:
        app.close()
    for tree_id, why in report.failed:
        print(f"tree {tree_id} refused: {why}", file=sys.stderr)
    print(
        f"{report.imported} trees imported ({messages} messages in the file), "
        f"{report.skipped} already in the log, {len(report.failed)} refused"
    )
    return 1 if report.failed else 0
