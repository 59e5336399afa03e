"""`dataengine flywheel`: one turn of datasets → SFT → RM → RLHF → register (→ prelabel) → report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from api.cli import add_data_option, fail
from api.cli.train import add_lora_option

STEP_HELP = "comma-separated subset of datasets,sft,rm,rlhf,register,prelabel,report"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flywheel",
        help="one turn: datasets -> sft -> rm -> rlhf -> register -> report",
        description=__doc__,
    )
    add_data_option(p)
    _add_vote_options(p)
    p.add_argument(
        "--base-model",
        default=None,
        metavar="PATH_OR_NAME",
        help="the model the turn starts from (a folder, a hub name or a registered name)",
    )
    p.add_argument(
        "--out", default=None, metavar="DIR", help="folder for everything this turn writes"
    )

    p.add_argument(
        "--name",
        default=None,
        help="registry prefix: models become NAME-sft, NAME-rm, NAME-rlhf "
        "(default: the --out folder's name)",
    )
    p.add_argument("--lang", default=None, help="only trees in this language")
    p.add_argument(
        "--only", default=None, metavar="STEPS", help=f"run just these steps ({STEP_HELP})"
    )
    p.add_argument("--force", action="store_true", help="redo the chosen steps even if done")
    p.add_argument(
        "--restart", action="store_true", help="discard an earlier turn in --out and start over"
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="optimiser steps for every training step (default: each trainer's own)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML/JSON with sections sft:, rm:, rlhf: of trainer options",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="STEP.KEY=VALUE",
        help="a trainer option for one step, e.g. rlhf.num_generations=8 (repeatable)",
    )
    p.add_argument(
        "--prelabel",
        type=int,
        default=0,
        metavar="N",
        help="after registering, the new policy writes N candidate replies per open "
        "prompt (the next turn's pre-labeler; default 0: skip)",
    )
    p.add_argument("--prelabel-limit", type=int, default=None, metavar="K")
    add_lora_option(p, merged=True)
    p.add_argument("--quiet", action="store_true", help="no trainer progress bars")
    p.set_defaults(handler=run_flywheel)


def _add_vote_options(p: argparse.ArgumentParser) -> None:
    """`status`, and how votes on model candidates enter the turn (issue 12)."""
    p.add_argument(
        "action",
        nargs="?",
        default="run",
        choices=("run", "status"),
        help="run a turn (default), or list the registered turns with their figures",
    )
    p.add_argument("--json", action="store_true", help="status: print the turns as JSON")
    p.add_argument(
        "--no-sft-model-replies",
        dest="sft_model_replies",
        action="store_false",
        help="keep model-written replies out of sft (by default sft may take one that "
        "people ranked best; rm, dpo and kto always take ranked ones)",
    )
    p.add_argument(
        "--previous",
        default=None,
        metavar="DIR",
        help="the turn to count new rows against (default: the latest registered turn)",
    )


def step_options(config: str | None, sets: list[str]) -> dict[str, dict[str, Any]]:
    from api.flywheel import TRAINING_STEPS, FlywheelError
    from training.config import parse_set, read_config_file

    options: dict[str, dict[str, Any]] = {s: {} for s in TRAINING_STEPS}
    if config:
        for step, section in read_config_file(config).items():
            if step not in options or not isinstance(section, dict):
                raise FlywheelError(
                    f"{config}: top-level keys must be {', '.join(TRAINING_STEPS)} "
                    f"holding option mappings, not {step!r}"
                )
            options[step].update(section)
    for key, value in parse_set(sets).items():
        step, dot, option = key.partition(".")
        if not dot or step not in options or not option:
            raise FlywheelError(
                f"--set {key}: write STEP.KEY=VALUE with STEP one of {', '.join(TRAINING_STEPS)}"
            )
        options[step][option] = value
    return options


def run_flywheel(args: argparse.Namespace) -> int:
    import shutil

    from rich.console import Console
    from rich.table import Table

    from api.bootstrap import data_dir
    from api.flywheel import Flywheel, FlywheelPlan
    from api.flywheel_table import table_rows
    from api.storage.logdb import log_exists, log_location

    folder = data_dir(args.data)
    if not log_exists(log_location(folder)):
        return fail(f"no event store in {folder}")
    if args.action == "status":
        from api.cli.flywheel_status import show_status

        return show_status(folder, args)
    if not args.base_model or not args.out:
        return fail("a flywheel turn needs --base-model and --out")
    if args.previous and not (Path(args.previous) / "datasets" / "manifest.json").exists():
        return fail(f"--previous {args.previous} holds no datasets/manifest.json")
    if args.max_steps is not None and args.max_steps < 1:
        return fail("--max-steps must be >= 1")
    if args.prelabel < 0:
        return fail("--prelabel must be >= 0")
    out = Path(args.out)
    if args.restart and out.exists():
        if not (out / "flywheel.json").exists():
            return fail(f"--restart only clears a flywheel folder; {out} holds no flywheel.json")
        shutil.rmtree(out)
    plan = FlywheelPlan(
        store=folder,
        out=out,
        base_model=args.base_model,
        name=args.name,
        options=step_options(args.config, args.sets),
        max_steps=args.max_steps,
        lang=args.lang,
        prelabel_n=args.prelabel,
        prelabel_limit=args.prelabel_limit,
        lora=args.lora,
        sft_model_replies=args.sft_model_replies,
        previous=Path(args.previous) if args.previous else None,
    )
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    console = Console(stderr=True)
    wheel = Flywheel(plan, report=console.print, progress=not args.quiet)
    summary = wheel.run(only=only, force=args.force)
    table = Table(title=f"flywheel turn {plan.prefix} (base {plan.base_model})")
    table.add_column("what")
    table.add_column("figure", justify="right")
    for what, figure in table_rows(summary):
        table.add_row(what, figure)
    Console().print(table)
    print(f"everything is in {out}", file=sys.stderr)
    return 0
