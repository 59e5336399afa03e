"""`dataengine datasets build|status`: SFT, RM, DPO, KTO and RL datasets pinned to a log
position, and how far the training projection that keeps their rows current has got."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from api.cli import add_data_option


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("datasets", help="training datasets").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    build = group.add_parser("build", help="build datasets from ready_for_export trees")
    add_data_option(build)
    build.add_argument("--out", required=True, metavar="DIR")
    build.add_argument(
        "--as-of",
        type=int,
        default=None,
        metavar="POSITION",
        help="log position to build at (default: the end of the log)",
    )
    build.add_argument(
        "--kinds", default="sft,rm,dpo,kto,rl", help="comma-separated subset of sft,rm,dpo,kto,rl"
    )
    build.add_argument("--lang", default=None, help="only trees whose prompt has this language")
    build.add_argument("--val-fraction", type=float, default=0.05)
    build.add_argument("--sft-paths", default="best", choices=["best", "top-k", "all"])
    build.add_argument("--top-k", type=int, default=2, help="rank cut-off for --sft-paths top-k")
    build.add_argument(
        "--include-synthetic",
        action="store_true",
        help="keep synthetic messages (left out by default, as in OA's training)",
    )
    build.add_argument(
        "--sft-model-replies",
        action="store_true",
        help="the sft path may take a model-written reply people ranked best "
        "(ranked model replies always enter rm, dpo and kto)",
    )
    build.add_argument(
        "--sources",
        default=None,
        metavar="A,B",
        help="only trees from these import sources (`import data --source`), and `local` "
        "for what people wrote here; default: every tree. Listed in the manifest",
    )
    build.add_argument(
        "--source",
        default="auto",
        choices=["auto", "replay", "projection"],
        help="rows from the training projection when it is at the position "
        "(auto), always from a replay of the log, or only the projection; "
        "the files are the same either way",
    )
    build.add_argument(
        "--images",
        action="store_true",
        help="vision-language datasets: content as parts, an images column (embedded in the "
        "HF folders), every image hashed in the manifest (projections.datasets.images)",
    )
    build.set_defaults(handler=build_datasets)
    status = group.add_parser("status", help="the training projection: lag, ready trees, rows")
    add_data_option(status)
    status.add_argument(
        "--val-fraction",
        type=float,
        default=0.05,
        help="split the row counts at this validation fraction",
    )
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.set_defaults(handler=show_status)


def _bar(desc: str, total: int) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="tree" if desc == "replay" else "kind",
        file=sys.stderr,
        disable=None,
    )


def build_datasets(args: argparse.Namespace) -> int:
    from api.bootstrap import data_dir
    from projections.datasets.build import build
    from projections.datasets.rows import BuildOptions

    options = BuildOptions(
        kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
        lang=args.lang,
        val_fraction=args.val_fraction,
        sft_paths=args.sft_paths,
        top_k=args.top_k,
        include_synthetic=args.include_synthetic,
        sft_model_replies=args.sft_model_replies,
        sources=None
        if args.sources is None
        else tuple(s.strip() for s in args.sources.split(",") if s.strip()),
    )
    if args.images:
        from api.cli.datasets_images import build_with_images

        return build_with_images(args, options, _bar, print_row_counts)
    manifest = build(
        data_dir(args.data),
        Path(args.out),
        options,
        as_of=args.as_of,
        progress=_bar,
        source=args.source,
    )
    print(
        f"built from {manifest['ready_trees']} ready trees at log position "
        f"{manifest['log_position']} into {args.out} (rows from the {manifest.source})",
        file=sys.stderr,
    )
    print_row_counts(manifest)
    return 0


def print_row_counts(manifest: Any) -> None:
    """Rows per dataset kind and split, as every build prints them."""
    for kind, counts in manifest["rows"].items():
        print(
            f"  {kind:12} train {counts['train']:>8}  validation {counts['validation']:>7}",
            file=sys.stderr,
        )


def show_status(args: argparse.Namespace) -> int:
    from api.bootstrap import data_dir
    from projections.datasets.precut import status

    report = status(data_dir(args.data), args.val_fraction)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"log position:         {report['log_position']}")
    if report["projection_position"] is None:
        print(
            f"training projection:  not projected ({report['note']}); it follows the log in "
            "`dataengine serve`, or run `dataengine projections rebuild`"
        )
        return 0
    print(
        f"training projection:  {report['projection_position']}  behind by {report['lag']} events"
    )
    print(
        f"ready trees:          {report['ready_trees']}  (newest became ready at "
        f"{report['newest_ready_position']}, last change at {report['last_change_position']})"
    )
    print(f"rows (validation fraction {args.val_fraction}):")
    for kind, counts in report["rows"].items():
        print(f"  {kind:12} train {counts['train']:>8}  validation {counts['validation']:>7}")
    return 0
