"""`dataengine datasets build --images`: the vision-language datasets (TRL's vision layout)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from api.cli import fail


def build_with_images(
    args: argparse.Namespace, options: Any, progress: Any, print_rows: Any
) -> int:
    from api.bootstrap import data_dir
    from projections.datasets.build import DatasetOptionsError
    from projections.datasets.images import build_images

    try:
        manifest = build_images(data_dir(args.data), Path(args.out), options, args.as_of, progress)
    except (DatasetOptionsError, ValueError) as e:
        return fail(str(e))
    print(
        f"built from {manifest['ready_trees']} ready trees at log position "
        f"{manifest['log_position']} into {args.out} with {len(manifest['images'])} images",
        file=sys.stderr,
    )
    print_rows(manifest)
    return 0
