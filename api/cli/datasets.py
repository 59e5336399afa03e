"""`dataengine datasets build`: SFT, RM, DPO, KTO and RL datasets pinned to a log position."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from api.cli import add_data_option


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("datasets", help="training datasets").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    build = group.add_parser("build", help="build datasets from ready_for_export trees")
    add_data_option(build)
    build.add_argument("--out", required=True, metavar="DIR")
    build.add_argument("--as-of", type=int, default=None, metavar="POSITION",
                       help="log position to build at (default: the end of the log)")
    build.add_argument("--kinds", default="sft,rm,dpo,kto,rl",
                       help="comma-separated subset of sft,rm,dpo,kto,rl")
    build.add_argument("--lang", default=None, help="only trees whose prompt has this language")
    build.add_argument("--val-fraction", type=float, default=0.05)
    build.add_argument("--sft-paths", default="best", choices=["best", "top-k", "all"])
    build.add_argument("--top-k", type=int, default=2, help="rank cut-off for --sft-paths top-k")
    build.add_argument("--include-synthetic", action="store_true",
                       help="keep synthetic messages (left out by default, as in OA's training)")
    build.set_defaults(handler=build_datasets)


def build_datasets(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from api.storage import data_dir
    from projections.datasets.build import build
    from projections.datasets.rows import BuildOptions

    options = BuildOptions(
        kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()), lang=args.lang,
        val_fraction=args.val_fraction, sft_paths=args.sft_paths, top_k=args.top_k,
        include_synthetic=args.include_synthetic,
    )

    def progress(trees, total):  # type: ignore[no-untyped-def]
        return tqdm(trees, total=total, unit="tree", desc="replay", file=sys.stderr, disable=None)

    manifest = build(data_dir(args.data), Path(args.out), options, as_of=args.as_of,
                     progress=progress)
    print(f"built from {manifest['ready_trees']} ready trees at log position "
          f"{manifest['log_position']} into {args.out}", file=sys.stderr)
    for kind, counts in manifest["rows"].items():
        print(f"  {kind:12} train {counts['train']:>8}  validation {counts['validation']:>7}",
              file=sys.stderr)
    return 0
