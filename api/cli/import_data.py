"""`dataengine import data` and `dataengine export data`: prompts, chat messages, preference
pairs and completions from and to JSONL, JSON, CSV, parquet and HF datasets folders."""

from __future__ import annotations

import argparse
import sys

from api.cli import add_data_option, fail

FORMATS = ("auto", "prompts", "messages", "pairs", "completions")


def register_import(imp: argparse._SubParsersAction) -> None:
    data = imp.add_parser(
        "data",
        help="prompts, messages, pairs or completions (JSONL, JSON, CSV, parquet, HF folder)",
    )
    add_data_option(data)
    data.add_argument("file", metavar="FILE_OR_FOLDER")
    data.add_argument("--format", default="auto", choices=FORMATS, help="default: by columns")
    data.add_argument("--split", default=None, help="split of an HF DatasetDict (default train)")
    data.add_argument("--lang", default="en", help="language of rows without a lang column")
    data.add_argument("--source", default=None, help="source name (default: the file's name)")
    data.add_argument(
        "--state",
        default=None,
        choices=["initial_prompt_review", "growing", "ranking", "ready_for_export"],
        help="prompts: initial_prompt_review (default) or growing (skips the initial review); "
        "others: ready_for_export (default), growing or ranking (people rank)",
    )
    data.add_argument("--limit", type=int, default=None, metavar="N", help="the first N rows")
    data.add_argument("--skip-bad", action="store_true", help="leave malformed rows out")
    data.add_argument(
        "--model-name", default=None, help="replies were written by this model (synthetic)"
    )
    data.set_defaults(handler=import_data)


def register_export(export: argparse._SubParsersAction) -> None:
    data = export.add_parser("data", help="the rows a source imported, in its format")
    add_data_option(data)
    data.add_argument("--source", required=True, help="the source name given at import")
    data.add_argument(
        "--out", required=True, help=".jsonl[.gz], .json, .csv, .parquet or an HF folder"
    )
    data.add_argument("--format", default=None, choices=FORMATS[1:], help="check the format")
    data.set_defaults(handler=export_data)


def import_data(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from api.bootstrap import data_dir, load_config, open_app
    from domain.service.importing.readers import DataFile
    from domain.service.importing.record import ImportOptions, plan_import, record_import

    if args.limit is not None and args.limit < 1:
        return fail("--limit must be at least 1")
    data = DataFile.open(args.file, split=args.split)
    options = ImportOptions(
        format=args.format,
        source=args.source,
        state=args.state,
        lang=args.lang,
        limit=args.limit,
        skip_bad=args.skip_bad,
        model_name=args.model_name,
    )
    with tqdm(unit="row", desc="check", file=sys.stderr, disable=None) as bar:
        plan = plan_import(data, options, progress=bar.update)
    folder = data_dir(args.data)
    app = open_app(folder, load_config(folder))
    with tqdm(total=plan.good, unit="row", desc="import", file=sys.stderr, disable=None) as bar:
        report = record_import(app, data, plan, options, progress=bar.update)
    for problem in list(plan.bad.values())[:20]:
        print(f"skipped {problem}", file=sys.stderr)
    _summary(
        [
            ("file", f"{data.path} ({data.kind}{', split ' + data.split if data.split else ''})"),
            ("sha256", plan.sha256),
            ("format", f"{plan.format} ({plan.shape.get('form', 'string')})"),
            ("source", plan.source),
            ("state", plan.state.value),
            ("rows read", str(plan.rows)),
            ("malformed, skipped", str(len(plan.bad))),
            ("trees added", str(report.imported)),
            ("already present", str(report.present)),
            ("log position", str(report.position) if report.position is not None else "-"),
        ]
    )
    return 0


def export_data(args: argparse.Namespace) -> int:
    from api.bootstrap import data_dir, load_config, open_app
    from domain.service.importing.export import export_rows, source_record
    from domain.service.importing.writers import write_rows

    folder = data_dir(args.data)
    app = open_app(folder, load_config(folder))
    record = source_record(app, args.source)
    if args.format is not None and args.format != record.format:
        return fail(f"source {args.source!r} holds {record.format}, not {args.format}")
    count = write_rows(export_rows(app, record), args.out)
    print(f"exported {count} {record.format} rows of {args.source} to {args.out}", file=sys.stderr)
    return 0


def _summary(rows: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="import data", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    Console(file=sys.stderr).print(table)
