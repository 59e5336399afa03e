"""`dataengine models list|show|register|init-tiny`: the models registry.

``list`` reads the registry read model joined with the model statistics (replies,
acceptance, win rate against human replies); ``show`` reads the aggregate itself, so it is
current even when no read model was built; ``register`` records a trained model with the
dataset manifest and metrics of its run; ``init-tiny`` writes a tiny offline model for demos.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from api.cli import add_data_option, fail


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("models", help="the models registry").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    listing = group.add_parser("list", help="registered models with their human win rate")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=list_models)
    show = group.add_parser("show", help="one registered model (from the log)")
    show.add_argument("name")
    show.set_defaults(handler=show_model)
    reg = group.add_parser("register", help="record a trained model under a name")
    reg.add_argument("--name", required=True)
    reg.add_argument(
        "--path", required=True, help="the model folder (or a hub id for --kind base/external)"
    )
    reg.add_argument("--kind", required=True, help="sft, rm, dpo, kto, rlhf, base or external")
    reg.add_argument("--base-model", default=None)
    reg.add_argument(
        "--dataset",
        default=None,
        metavar="DIR",
        help="the dataset folder it was trained on (its manifest.json gives the "
        "log position and audit digest)",
    )
    reg.add_argument(
        "--metrics",
        default=None,
        metavar="FILE",
        help="the run's metrics.json (headline numbers are kept)",
    )
    reg.set_defaults(handler=register_model)
    tiny = group.add_parser("init-tiny", help="write a tiny random Llama + tokenizer (offline)")
    tiny.add_argument("--out", required=True, metavar="DIR")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--register",
        default=None,
        metavar="NAME",
        help="also register it (kind base) under this name",
    )
    tiny.set_defaults(handler=init_tiny)
    for parser in (listing, show, reg, tiny):
        add_data_option(parser)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def list_models(args: argparse.Namespace) -> int:
    from api.cli.stats import _run
    from projections.arena import arena_leaderboard, with_strengths
    from projections.models import registry

    def query(conn: Any) -> list[dict[str, Any]]:
        return with_strengths(registry(conn), arena_leaderboard(conn), key="name")

    return _run(args, query, _print_models)


def _print_models(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no models registered")
        return
    headers = (
        "name",
        "kind",
        "base model",
        "dataset pos",
        "log pos",
        "replies",
        "acceptance",
        "mean rank",
        "pairs vs human",
        "win rate",
        "BT strength [95%]",
        "votes",
    )
    table = [
        [
            _cell(v)
            for v in (
                r["name"],
                r["kind"],
                r["base_model"],
                r["dataset_position"],
                r["log_position"],
                r["replies"],
                r["acceptance_rate"],
                r["mean_rank"],
                r["human_pairs"],
                r["win_rate"],
                _strength(r),
                r["votes"],
            )
        ]
        for r in rows
    ]
    widths = [max([len(h)] + [len(row[i]) for row in table]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _strength(row: dict[str, Any]) -> str | None:
    """Bradley-Terry strength vs people's replies with its bootstrap interval."""
    if row["strength"] is None:
        return None
    low, high = row["strength_interval"]
    return f"{row['strength']:+.2f} [{low:+.2f}, {high:+.2f}]"


def _app(data: str) -> Any:
    from api.bootstrap import data_dir, load_config, open_app

    folder = data_dir(data)
    return open_app(folder, load_config(folder))


def show_model(args: argparse.Namespace) -> int:
    from api.bootstrap import data_dir
    from api.storage.logdb import log_exists, log_location

    if not log_exists(log_location(data_dir(args.data))):
        return fail(f"no event store in {data_dir(args.data)}")
    app = _app(args.data)
    try:
        print(json.dumps(app.get_model(args.name).as_dict(), indent=2))
    finally:
        app.close()
    return 0


def register_model(args: argparse.Namespace) -> int:
    from training.registry import register

    app = _app(args.data)
    try:
        outcome = register(
            app,
            name=args.name,
            path=args.path,
            kind=args.kind,
            base_model=args.base_model,
            dataset=args.dataset,
            metrics=args.metrics,
        )
        model = app.get_model(args.name)
    finally:
        app.close()
    if outcome.recorded:
        print(
            f"registered {model.name} ({model.kind}) at log position {outcome.position}: "
            f"{model.path}"
        )
    else:
        print(f"{model.name} is already registered with these facts; nothing recorded")
    return 0


def init_tiny(args: argparse.Namespace) -> int:
    from training.tiny import init_tiny as write

    path = write(args.out, seed=args.seed)
    print(f"tiny model written to {path}")
    if args.register:
        app = _app(args.data)
        try:
            app.register_model(name=args.register, path=str(path.resolve()), kind="base")
        finally:
            app.close()
        print(f"registered {args.register} (base)")
    return 0
