"""`dataengine prelabel`: a model writes candidate assistant replies for people to review.

The read model is caught up first and its extendible prompter parents (growing trees,
accepted, undeleted, room below the children and depth limits, tree below its goal size,
not reserved by someone's open reply task) are the targets; training.prelabel re-checks
each against its tree, samples, and submits through the same command as people.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from api.cli import add_data_option, fail
from api.storage.blobs import blob_store  # the prompts' images, for vision-language models


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prelabel", help="generate synthetic assistant replies with a model")
    add_data_option(p)
    p.add_argument(
        "--model",
        required=True,
        action="append",
        metavar="NAME_OR_PATH",
        help="a registered model name, a model folder or a hub id; repeat it and the "
        "models share each prompt's room, so people rank them side by side",
    )
    p.add_argument("--n", type=int, default=4, help="candidates per prompt and model")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--limit", type=int, default=None, metavar="K", help="at most K prompts")
    p.add_argument("--lang", default=None, help="only prompts in this language (default: all)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=run_prelabel)


def run_prelabel(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from api.bootstrap import caught_up_runner, data_dir, load_config, open_app
    from training.prelabel import PrelabelOptions, find_targets
    from training.prelabel_models import prelabel_models
    from training.registry import resolve

    if args.limit is not None and args.limit < 1:
        return fail("--limit must be >= 1")
    try:
        options = PrelabelOptions(
            n=args.n,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            batch_size=args.batch_size,
            seed=args.seed,
        )
    except ValueError as e:
        return fail(str(e))
    folder = data_dir(args.data)
    config = load_config(folder)
    try:
        runner = caught_up_runner(args.data)
    except FileNotFoundError as e:
        return fail(str(e))
    try:
        targets = find_targets(runner.readmodel.reader(), config, args.lang, args.limit)
    finally:
        runner.close()
    if len(set(args.model)) != len(args.model):
        return fail("name each --model once")
    app = open_app(folder, config)
    try:
        models = [resolve(app, m) for m in args.model]
        for model in models:
            print(
                f"{len(targets)} prompts can take replies; model {model.model_name}"
                + (f" -> {model.path}" if model.path != model.model_name else ""),
                file=sys.stderr,
            )
        with tqdm(
            total=len(targets) * len(models),
            unit="prompt",
            desc="prelabel",
            file=sys.stderr,
            disable=not targets,
        ) as bar:
            try:
                summaries = prelabel_models(
                    app, targets, models, options, progress=bar.update, blobs=blob_store(folder)
                )
            except OSError as e:  # transformers: no such folder / hub id offline
                return fail(f"cannot load model: {e}")
    finally:
        app.close()
    if args.json:
        found = [s.as_dict() for s in summaries]
        print(json.dumps(found[0] if len(found) == 1 else found, indent=2))
        return 0
    for summary in summaries:
        _print_summary(summary)
    return 0


def _print_summary(s: Any) -> None:
    def counts(c: Any) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"

    rate = s.tokens_per_second
    print(
        f"model {s.model_name} on {s.device or '-'}: {s.prompts_seen} prompts seen, "
        f"{s.generated} candidates sampled, {s.added} replies added, "
        f"{s.already_present} already there from earlier runs"
    )
    print(f"refused: {counts(s.refused)}")
    print(f"skipped: {counts(s.skipped)}")
    if rate is not None:
        print(f"{s.new_tokens} new tokens at {rate:.1f} tokens/s")
