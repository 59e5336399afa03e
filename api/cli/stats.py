"""`dataengine stats leaderboard|trollboard|models|agreement`: the statistics read models.

The read model is brought up to the log's head first (with a progress bar on stderr), so
the answer covers everything recorded; ``--json`` prints the same dicts the HTTP API serves.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from api.bootstrap import caught_up_runner
from api.cli import add_data_option, fail


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser(
        "stats", help="leaderboards, model statistics, annotator agreement"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    board = group.add_parser("leaderboard", help="users by OA's leader score")
    board.set_defaults(handler=show_leaderboard)
    troll = group.add_parser("trollboard", help="users by OA's troll score")
    troll.set_defaults(handler=show_trollboard)
    for parser in (board, troll):
        parser.add_argument(
            "--time-frame", default="total", choices=("day", "week", "month", "total")
        )
        parser.add_argument("--max-count", type=int, default=20)
    models = group.add_parser(
        "models",
        help="per model: replies, acceptance, win rate; the arena: Bradley-Terry strengths "
        "with intervals, pairwise win rates, position bias",
    )
    models.add_argument(
        "--rounds", type=int, default=200, help="bootstrap resamples for the intervals"
    )
    models.set_defaults(handler=show_models)
    agreement = group.add_parser(
        "agreement", help="rankers vs the consensus (Kendall tau), labels (alpha)"
    )
    agreement.add_argument(
        "--min-rankings",
        type=int,
        default=1,
        help="list rankers with at least this many scored rankings",
    )
    agreement.set_defaults(handler=show_agreement)
    for parser in (board, troll, models, agreement):
        add_data_option(parser)
        parser.add_argument("--json", action="store_true", help="print JSON")


def _run(args: argparse.Namespace, query: Any, render: Any) -> int:
    try:
        runner = caught_up_runner(args.data)
    except FileNotFoundError as e:
        return fail(str(e))
    try:
        result = query(runner.readmodel.reader())
    finally:
        runner.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result)
    return 0


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in text:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def show_leaderboard(args: argparse.Namespace) -> int:
    from projections.leaderboard import leaderboard

    def render(result: dict[str, Any]) -> None:
        print(f"leaderboard ({result['time_frame']}), {len(result['leaderboard'])} users")
        _table(
            (
                "rank",
                "user",
                "score",
                "level",
                "prompts",
                "replies",
                "labels",
                "rankings",
                "ranked 1st",
                "streak",
            ),
            [
                (
                    r["rank"],
                    r["display_name"],
                    r["leader_score"],
                    r["level"],
                    r["prompts"],
                    r["replies_assistant"] + r["replies_prompter"],
                    r["labels_simple"] + r["labels_full"],
                    r["rankings_total"],
                    r["reply_ranked_1"],
                    r["streak_days"],
                )
                for r in result["leaderboard"]
            ],
        )

    now = datetime.now(UTC)
    return _run(
        args, lambda conn: leaderboard(conn, args.time_frame, now, max_count=args.max_count), render
    )


def show_trollboard(args: argparse.Namespace) -> int:
    from projections.leaderboard import trollboard

    def render(result: dict[str, Any]) -> None:
        print(f"trollboard ({result['time_frame']}), {len(result['trollboard'])} users")
        _table(
            ("rank", "user", "troll score", "red flags", "up", "down", "spam prompts", "enabled"),
            [
                (
                    r["rank"],
                    r["display_name"],
                    r["troll_score"],
                    r["red_flags"],
                    r["upvotes"],
                    r["downvotes"],
                    r["spam_prompts"],
                    r["enabled"],
                )
                for r in result["trollboard"]
            ],
        )

    now = datetime.now(UTC)
    return _run(
        args, lambda conn: trollboard(conn, args.time_frame, now, max_count=args.max_count), render
    )


def show_models(args: argparse.Namespace) -> int:
    from projections.arena import arena_leaderboard, with_strengths
    from projections.model_stats import model_leaderboard

    def query(conn: Any) -> dict[str, Any]:
        board = arena_leaderboard(conn, rounds=args.rounds)
        return {"models": with_strengths(model_leaderboard(conn), board), "arena": board}

    def render(result: dict[str, Any]) -> None:
        rows = result["models"]
        if not rows:
            print("no model replies recorded")
            return
        _table(
            ("model", "replies", "acceptance", "mean rank", "pairs vs human", "win rate"),
            [
                (
                    r["model_name"],
                    r["replies"],
                    r["acceptance_rate"],
                    r["mean_rank"],
                    r["human_pairs"],
                    r["win_rate"],
                )
                for r in rows
            ],
        )
        _render_arena(result["arena"])

    return _run(args, query, render)


def _render_arena(board: dict[str, Any]) -> None:
    players = board["players"]
    if not players:
        print("\nno rankings compare models yet")
        return
    level = round(board["level"] * 100)
    print(
        f"\nBradley-Terry strengths (log-odds, relative to {board['anchor'] or 'the mean'}; "
        f"{level}% intervals from {board['rounds']} resamples of {board['groups']} trees)"
    )
    _table(
        ("player", "strength", "interval", "wins", "comparisons", "votes", "voters"),
        [
            (
                p["player"],
                p["strength"],
                f"[{p['interval'][0]:.3f}, {p['interval'][1]:.3f}]",
                p["wins"],
                p["comparisons"],
                p["votes"],
                p["voters"],
            )
            for p in players
        ],
    )
    names = [p["player"] for p in players]
    print("\nwin rate of the row's player against the column's")
    _table(
        ["", *names],
        [[a, *(board["matrix"][a].get(b) if a != b else None for b in names)] for a in names],
    )
    if board["position_bias"]:
        print("\nposition bias: win rate by the position a candidate was shown at")
        _table(
            ("shown", "position", "comparisons", "win rate"),
            [
                (r["shown"], r["position"], r["comparisons"], r["win_rate"])
                for r in board["position_bias"]
            ],
        )


def show_agreement(args: argparse.Namespace) -> int:
    from projections.agreement import agreement

    def render(result: dict[str, Any]) -> None:
        mean = result["mean_tau"]
        print(
            f"rankings compared with the consensus: {result['rankings_compared']}, "
            f"mean Kendall tau {'-' if mean is None else f'{mean:.3f}'}"
        )
        _table(
            ("user", "rankings", "mean tau", "min", "max"),
            [
                (
                    r["display_name"] or r["user_id"],
                    r["rankings"],
                    r["mean_tau"],
                    r["min_tau"],
                    r["max_tau"],
                )
                for r in result["rankers"]
            ],
        )
        print()
        print("Krippendorff's alpha per label (interval metric; 0/1 labels: = nominal)")
        _table(
            ("label", "widget", "messages", "values", "alpha"),
            [
                (r["label"], r["widget"], r["units"], r["values"], r["alpha"])
                for r in result["labels"]
            ],
        )

    return _run(args, lambda conn: agreement(conn, min_rankings=args.min_rankings), render)
