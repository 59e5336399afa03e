"""The flywheel report's table rows and picture from given figures (no training here; the
end-to-end turn in tests/test_flywheel.py computes real ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from api.flywheel_plot import plot_report  # noqa: E402
from api.flywheel_report import rm_validation  # noqa: E402
from api.flywheel_table import report_table_rows  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def report(png: Path, strength: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "previous_policy": "turn0",
        "rm_validation": {
            "accuracy": 0.8125,
            "pairs": 208,
            "split": "validation",
            "skipped_too_long": 3,
        },
        "held_out_reward": {
            "prompts": 16,
            "policy": {"mean": 0.5, "scored": 16, "too_long": 0},
            "previous": {"mean": -0.25, "scored": 15, "too_long": 1},
            "gain": 0.75,
        },
        "strength": strength
        or {"anchor": None, "policy": None, "previous": None, "leaderboard": []},
        "from_votes": {"pairs": 0, "kto": 0, "sft": 0, "models": {}},
        "report_png": str(png),
    }


def test_table_rows_say_pairs_too_long_and_both_policies(tmp_path: Path) -> None:
    rows = dict(report_table_rows(report(tmp_path / "report.png")))
    assert rows["rm validation accuracy"] == "0.812 on 208 pairs (validation), 3 too long"
    assert (
        rows["held-out mean reward (16 prompts)"] == "new +0.500 vs previous -0.250 (gain +0.750)"
    )
    assert rows["policy strength vs the mean"] == "not compared yet"
    assert rows["report"] == "report.png"
    board = {
        "anchor": "turn0",
        "policy": {"strength": 1.5, "interval": [0.25, 2.75], "votes": 40},
        "previous": {"strength": 0.0, "interval": [0.0, 0.0], "votes": 55},
        "leaderboard": [],
    }
    rows = dict(report_table_rows(report(tmp_path / "report.png", board)))
    assert rows["policy strength vs turn0"] == "+1.50 [+0.25, +2.75] (40 votes)"
    assert rows["previous (turn0)"] == "+0.00 [+0.00, +0.00] (55 votes)"


def test_no_held_out_prompts_is_said(tmp_path: Path) -> None:
    r = report(tmp_path / "report.png")
    r["held_out_reward"] = {"prompts": 0, "note": "no held-out prompts: the rlhf validation split"}
    assert dict(report_table_rows(r))["held-out mean reward"].startswith("no held-out prompts")


def test_report_png_with_and_without_data(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    plot_report(empty, report(empty), [], "nothing yet")
    assert empty.read_bytes()[:8] == PNG
    full = tmp_path / "full.png"
    r = report(full)
    r["strength"] = {
        "anchor": "turn0",
        "leaderboard": [
            {"player": "turn1-rlhf", "strength": 0.8, "interval": [0.1, 1.6], "votes": 30},
            {"player": "turn0", "strength": 0.0, "interval": [0.0, 0.0], "votes": 50},
            {"player": "human", "strength": -0.4, "interval": [-1.2, 0.3], "votes": 12},
        ],
    }
    r["from_votes"]["models"] = {"turn0": {"pairs": 12, "kto": 8, "sft": 2}}
    turns = [
        {"turn": "t1", "rm_accuracy": 0.7, "policy_reward": 0.2, "previous_reward": 0.1},
        {"turn": "t2", "rm_accuracy": 0.8, "policy_reward": None, "previous_reward": None},
    ]
    plot_report(full, r, turns, "two turns")
    assert full.read_bytes()[:8] == PNG
    assert full.stat().st_size > empty.stat().st_size  # the panels hold something


def test_rm_validation_reads_the_rm_run(tmp_path: Path) -> None:
    (tmp_path / "rm").mkdir()
    (tmp_path / "rm" / "metrics.json").write_text(
        '{"pairwise_accuracy": {"value": 0.75, "pairs": 200, "skipped_too_long": 2,'
        ' "split": "validation"}, "validation": {"source": "re-split by tree", "rows": 202}}'
    )
    assert rm_validation(tmp_path) == {
        "accuracy": 0.75,
        "pairs": 200,
        "split": "validation",
        "skipped_too_long": 2,
        "validation": {"source": "re-split by tree", "rows": 202},
    }
    assert rm_validation(tmp_path / "missing")["accuracy"] is None
