"""`dataengine flywheel status`: the registered turns, their data and their policy's strength."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _strength(turn: dict[str, Any]) -> str:
    if turn["strength"] is None:
        return "-"
    low, high = turn["strength_interval"]
    return f"{turn['strength']:+.2f} [{low:+.2f}, {high:+.2f}]"


def _figure(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def show_status(folder: Path, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from api.flywheel_turns import turns

    found = turns(folder)
    if getattr(args, "json", False):
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print("no flywheel turns registered yet")
        return 0
    table = Table(title="flywheel turns (strength: Bradley-Terry vs people's replies, 95%)")
    columns = ("turn", "log position", "rows sft/rm/kto", "from votes", "rm val acc (pairs)")
    for column in (*columns, "held-out reward gain", "policy", "strength"):
        table.add_column(column)
    for t in found:
        rows, votes = t["rows"], t["rows_from_votes"] or {}
        table.add_row(
            str(t["turn"]),
            str(t["log_position"]),
            f"{rows.get('sft', 0)}/{rows.get('rm', 0)}/{rows.get('kto', 0)}",
            f"pairs {votes.get('pairs', 0)}, sft {votes.get('sft', 0)}",
            _figure(t["rm_accuracy"], ".3f") + f" ({t['rm_pairs'] or 0})",
            _figure(t["held_out_gain"], "+.3f"),
            t["policy"],
            f"{_strength(t)} ({t['votes']} votes)",
        )
    Console().print(table)
    return 0
