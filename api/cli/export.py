"""`dataengine export oa` and `dataengine import oa`: Open-Assistant export files."""

from __future__ import annotations

import argparse
import gzip
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from api.cli import add_data_option, fail, import_data, oa_seed
from domain.model.states import TreeState


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="export trees").add_subparsers(
        dest="action", required=True, metavar="FORMAT"
    )
    oa = export.add_parser("oa", help="Open-Assistant ExportMessageTree JSON lines")
    add_data_option(oa)
    oa.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="output file (.jsonl or .jsonl.gz; '-' for stdout)",
    )
    oa.add_argument(
        "--state",
        default=TreeState.READY_FOR_EXPORT.value,
        choices=[s.value for s in TreeState] + ["all"],
    )
    oa.add_argument("--lang", default=None, help="only trees whose prompt has this language")
    oa.add_argument("--include-deleted", action="store_true")
    oa.add_argument("--include-spam", action="store_true", help="messages of any review result")
    oa.add_argument(
        "--include-synthetic", action="store_true", help="also trees that hold synthetic messages"
    )
    oa.add_argument("--labels", action="store_true", help="add averaged labels")
    oa.add_argument("--events", action="store_true", help="add emoji and ranking events")
    oa.add_argument("--anonymize", default=None, metavar="SEED", help="hash ids with this seed")
    oa.add_argument(
        "--as-of",
        type=int,
        default=None,
        metavar="POSITION",
        help="export the trees as they were at this log position",
    )
    oa.add_argument("--messages", action="store_true", help="flat messages instead of trees")
    oa.set_defaults(handler=export_oa)
    import_data.register_export(export)

    imp = sub.add_parser("import", help="import trees").add_subparsers(
        dest="action", required=True, metavar="FORMAT"
    )
    ioa = imp.add_parser("oa", help="Open-Assistant export files (trees or messages, .gz ok)")
    add_data_option(ioa)
    ioa.add_argument("files", nargs="+", metavar="FILE")
    ioa.add_argument(
        "--state",
        default=None,
        choices=["ranking", "backlog"],
        help="send the trees to people for ranking instead of keeping their ranks",
    )
    ioa.add_argument("--origin", default=None, help="origin recorded for trees that name none")
    ioa.set_defaults(handler=import_oa)
    import_data.register_import(imp)
    oa_seed.register_import(imp)


@contextmanager
def _output(out: str) -> Iterator[BinaryIO]:
    if out == "-":
        yield sys.stdout.buffer
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw:
        if path.suffix == ".gz":
            # mtime 0 and no file name: the same trees give the same bytes.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
                yield zipped  # type: ignore[misc]
        else:
            yield raw


def export_oa(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from api.bootstrap import data_dir
    from projections import log_reader
    from projections.oa_export import ExportOptions, TreeExporter
    from projections.user_merge import merged_users

    db = log_reader.events_db(data_dir(args.data))
    position = log_reader.resolve_position(db, args.as_of)
    options = ExportOptions(
        state=None if args.state == "all" else args.state,
        lang=args.lang,
        include_deleted=args.include_deleted,
        include_spam=args.include_spam,
        include_synthetic=args.include_synthetic,
        labels=args.labels,
        events=args.events,
        anonymize_seed=args.anonymize,
        messages=args.messages,
    )
    exporter = TreeExporter(options, merged=merged_users(db, position))
    lines = 0
    trees = tqdm(
        log_reader.iter_trees(db, position),
        total=log_reader.count_trees(db, position),
        unit="tree",
        desc="export",
        file=sys.stderr,
        disable=None,
    )
    with _output(args.out) as out:
        for line in exporter.lines(trees):
            out.write(line)
            lines += 1
    kind = "messages" if args.messages else "trees"
    print(f"exported {lines} {kind} as of log position {position} to {args.out}", file=sys.stderr)
    return 0


def import_oa(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from api.bootstrap import data_dir, load_config, open_app
    from domain.service.oa_import import STATE_CHOICES, import_trees, read_export_file

    paths = [Path(f) for f in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        return fail(f"no such file: {', '.join(missing)}")
    folder = data_dir(args.data)
    app = open_app(folder, load_config(folder))
    state = STATE_CHOICES[args.state] if args.state else None
    total = imported = skipped = 0
    failures: list[tuple[str, str]] = []
    with tqdm(unit="tree", desc="import", file=sys.stderr, disable=None) as bar:
        for path in paths:
            report = import_trees(
                app, read_export_file(path), state=state, origin=args.origin, progress=bar
            )
            imported += report.imported
            skipped += report.skipped
            failures += report.failed
            total += report.imported + report.skipped + len(report.failed)
    for tree_id, error in failures:
        print(f"tree {tree_id}: {error}", file=sys.stderr)
    print(
        f"imported {imported} trees, {skipped} already present, {len(failures)} refused "
        f"(of {total})",
        file=sys.stderr,
    )
    return 1 if failures else 0
