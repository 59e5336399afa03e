"""The flywheel's turns as the log knows them, and what each turn's data owes to votes.

A turn registers its models (``<prefix>-sft|rm|rlhf``) with the dataset folder it built,
so the registry read model lists the turns: every registered rlhf model whose dataset
folder sits in a folder holding ``flywheel.json``. No state of our own: a turn that has
not registered yet is not listed. Each turn is shown with its log position, row counts
and the Bradley-Terry strength of its policy in the arena now (votes on its candidates
come after the turn, so the figure grows with them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATE_FILE = "flywheel.json"


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def turns(store: Path, rounds: int = 200) -> list[dict[str, Any]]:
    """Registered turns in registry order, each with its figures and its policy's strength."""
    from api.bootstrap import caught_up_runner
    from projections.arena import arena_leaderboard, with_strengths
    from projections.models import registry

    runner = caught_up_runner(str(store))
    try:
        conn = runner.readmodel.reader()
        models = with_strengths(registry(conn), arena_leaderboard(conn, rounds), key="name")
    finally:
        runner.close()
    found = []
    for model in models:
        if model["kind"] != "rlhf":
            continue
        folder = Path(model["path"]).parent
        state = _read(folder / STATE_FILE)
        if not isinstance(state, dict):
            continue
        data = state.get("steps", {}).get("datasets", {}).get("summary", {})
        report = state.get("steps", {}).get("report", {}).get("summary", {})
        found.append(
            {
                "turn": state.get("name"),
                "folder": str(folder),
                "base_model": state.get("base_model"),
                "policy": model["name"],
                "log_position": data.get("log_position"),
                "rows": {k: sum(v.values()) for k, v in data.get("rows", {}).items()},
                "rows_from_votes": data.get("from_votes"),
                "strength": model["strength"],
                "strength_interval": model["strength_interval"],
                "votes": model["votes"],
                # the report step's held-out figures (None before it ran)
                "rm_accuracy": (report.get("rm_validation") or {}).get("accuracy"),
                "rm_pairs": (report.get("rm_validation") or {}).get("pairs"),
                "held_out_gain": (report.get("held_out_reward") or {}).get("gain"),
            }
        )
    return found


def previous_turn(store: Path, out: Path) -> Path | None:
    """The latest registered turn other than ``out`` (the one a new turn compares with)."""
    earlier = [Path(t["folder"]) for t in turns(store, rounds=0)]
    earlier = [f for f in earlier if f.resolve() != out.resolve()]
    return earlier[-1] if earlier else None


def new_rows(rows: dict[str, dict[str, int]], previous: Path | None) -> dict[str, int] | None:
    """Rows per kind beyond the previous turn's (None without a previous turn)."""
    if previous is None:
        return None
    before = _read(previous / "datasets" / "manifest.json")
    if not isinstance(before, dict):
        return None
    old = before.get("rows", {})
    return {k: sum(v.values()) - sum(old.get(k, {}).values()) for k, v in rows.items()}
