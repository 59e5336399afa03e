"""`dataengine train sft|rm|dpo|kto|rlhf`: train on a dataset build, write a run folder.

torch, transformers and trl are imported only when a command runs, so `dataengine --help`
stays fast. Options reach the TRL config from `--config FILE` (YAML or JSON), then
`--set key=value` (repeatable), then this command's own flags, each overriding the last.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = {
    "sft": "supervised fine-tuning on the best threads (sft rows)",
    "rm": "reward model on ranked pairs (rm rows); reports pairwise accuracy",
    "dpo": "direct preference optimisation on ranked pairs (dpo rows)",
    "kto": "KTO on replies labelled desirable/undesirable (kto rows)",
    "rlhf": "GRPO against a reward model on the rl prompts",
}


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("train", help="train models on a dataset build (TRL)").add_subparsers(
        dest="kind", required=True, metavar="KIND"
    )
    for kind, text in HELP.items():
        p = group.add_parser(kind, help=text, description=text)
        p.add_argument(
            "--data",
            required=True,
            metavar="DIR",
            help="a `datasets build` folder (with manifest.json) or a kind folder",
        )
        if kind == "rlhf":
            p.add_argument(
                "--policy",
                "--model",
                dest="model",
                required=True,
                metavar="DIR",
                help="the policy to improve (usually the SFT run)",
            )
            p.add_argument("--reward-model", required=True, metavar="DIR", help="a `train rm` run")
        else:
            p.add_argument(
                "--model",
                required=True,
                metavar="PATH_OR_NAME",
                help="a model folder or hub name (dpo/kto: usually the SFT run)",
            )
        p.add_argument(
            "--out",
            required=True,
            metavar="DIR",
            help="run folder to write (replaces an earlier run there, nothing else)",
        )
        p.add_argument("--config", metavar="FILE", help="YAML/JSON mapping of trainer options")
        p.add_argument(
            "--set",
            dest="sets",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a trainer option, value read as YAML (repeatable)",
        )
        p.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimiser steps")
        if kind in ("dpo", "kto", "rlhf"):
            p.add_argument(
                "--beta",
                type=float,
                metavar="B",
                help="KL weight (dpo/kto default 0.1; rlhf default 0 = no KL penalty)",
            )
            p.add_argument(
                "--ref-model",
                metavar="DIR",
                help="reference model (default: the starting model's folder)",
            )
        add_run_options(p)
        p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
        p.set_defaults(handler=run_training)


def add_lora_option(p: argparse.ArgumentParser, merged: bool = False) -> None:
    p.add_argument(
        "--lora",
        nargs="?",
        const="",
        metavar="SPEC",
        help="train LoRA adapters (peft): r=16,alpha=32,dropout=0.05,target=all-linear"
        " (targets joined by +), bits=4|8 (GPU + bitsandbytes), "
        + ("always merged into full weights" if merged else "merge=true for full weights"),
    )


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Resume, LoRA and the validation split."""
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from the last checkpoint in .OUT.partial",
    )
    add_lora_option(p)
    p.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="re-split train + validation by tree with this validation fraction",
    )
    p.add_argument(
        "--val-min",
        type=int,
        metavar="N",
        help="fewest validation rows; a smaller split is topped up by tree (default 16)",
    )


def gather_options(args: argparse.Namespace) -> dict[str, Any]:
    from training.config import parse_set, read_config_file

    options: dict[str, Any] = read_config_file(args.config) if args.config else {}
    options.update(parse_set(args.sets))
    if args.max_steps is not None:
        options["max_steps"] = args.max_steps
    if getattr(args, "beta", None) is not None:
        options["beta"] = args.beta
    for flag in ("val_fraction", "val_min"):
        if getattr(args, flag, None) is not None:
            options[flag] = getattr(args, flag)
    return options


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _split(metrics: dict[str, Any], key: str) -> str:
    split = metrics.get(f"{key}_split")
    return f" ({split})" if split else ""


def _data_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    data = metrics["dataset"]
    rows = [
        ("dataset", f"{data['path']} (log position {_fmt(data['log_position'])})"),
        ("rows", f"train {metrics['train_samples']}, validation {metrics['validation_samples']}"),
    ]
    split = metrics.get("validation") or {}
    if split.get("source", "build") != "build":
        rows.append(
            (
                "validation split",
                f"{split['source']}: {split['rows']} rows (the build had {split['build_rows']})",
            )
        )
    too_long = metrics.get("too_long")
    if too_long:
        parts = [
            f"{name} {c['truncated']} truncated, {c['dropped']} dropped"
            for name in ("train", "validation")
            if (c := too_long[name])["truncated"] or c["dropped"]
        ]
        rows.append((f"over max_length {too_long['max_length']}", "; ".join(parts) or "none"))
    if metrics.get("prompts_dropped_too_long") is not None:
        rows.append(
            (
                f"prompts over {metrics['max_prompt_length']} tokens",
                f"{metrics['prompts_dropped_too_long']} left out",
            )
        )
    if "assistant_only_loss" in metrics:
        rows.append(
            (
                "loss on",
                "assistant turns"
                if metrics["assistant_only_loss"]
                else "every token (the chat template has no generation markers)",
            )
        )
    return rows


def _figure_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        (
            "loss (train mean / final)",
            f"{_fmt(metrics['train_loss'])} / {_fmt(metrics['final_loss'])}"
            + _split(metrics, "final_loss"),
        )
    ]
    accuracy = metrics.get("pairwise_accuracy")
    if accuracy:
        rows.append(
            (
                "pairwise accuracy",
                f"{_fmt(accuracy['value'])} on {accuracy['pairs']} {accuracy['split']} pairs",
            )
        )
    if metrics["kind"] == "rlhf":
        rows.append(
            (
                "reward (first / last)",
                f"{_fmt(metrics['initial_reward'])} / {_fmt(metrics['final_reward'])}"
                + _split(metrics, "final_reward"),
            )
        )
        rows.append(("KL (last)", _fmt(metrics["final_kl"]) if metrics["beta"] else "off (beta 0)"))
    if metrics["kind"] == "dpo":
        rows.append(
            (
                "implicit reward accuracy",
                _fmt(metrics["final_reward_accuracy"]) + _split(metrics, "final_reward_accuracy"),
            )
        )
    return rows


def summary_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    device = metrics["device"]
    rows = [
        ("kind", metrics["kind"]),
        ("base model", metrics["base_model"]),
        *_data_rows(metrics),
        ("steps", _fmt(metrics["global_step"])),
        *_figure_rows(metrics),
        ("runtime", f"{_fmt(metrics['train_runtime'])} s on {device['type']}"),
    ]
    if metrics.get("resumed_from"):
        rows.append(("resumed from", metrics["resumed_from"]))
    if metrics.get("lora"):
        lora = metrics["lora"]
        merged = "merged into full weights" if lora["merge"] else "adapter only"
        rows.append(("LoRA", f"r {lora['r']}, alpha {lora['alpha']:g}, {merged}"))
    if metrics.get("report_to"):
        rows.append(("tracking", ", ".join(metrics["report_to"]) + f" (in {metrics['out']})"))
    return rows


def run_training(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from training.runs import train

    result = train(
        args.kind,
        data=Path(args.data),
        model=args.model,
        out=Path(args.out),
        options=gather_options(args),
        reward_model=getattr(args, "reward_model", None),
        ref_model=getattr(args, "ref_model", None),
        progress=not args.quiet,
        resume=args.resume,
        lora=args.lora,
    )
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under accelerate launch / torchrun: one table
        return 0
    table = Table(title=f"train {args.kind} -> {result.out}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for name, value in summary_rows({**result.metrics, "out": str(result.out)}):
        table.add_row(name, value)
    Console().print(table)
    return 0
