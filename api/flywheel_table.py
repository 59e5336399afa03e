"""The flywheel turn's summary as (what, figure) rows for the CLI's rich table."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def accuracy(value: Any) -> float | None:
    """pairwise_accuracy is a number or {"value": ..., "pairs": ...}."""
    if isinstance(value, dict):
        value = value.get("value")
    return value if isinstance(value, (int, float)) else None


def table_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """What the turn produced, as (what, figure) rows for the CLI table."""
    steps = summary["steps"]
    rows: list[tuple[str, str]] = []

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    if "datasets" in steps:
        d = steps["datasets"]
        rows.append(("log position", fmt(d["log_position"])))
        rows.append(("ready trees", fmt(d["ready_trees"])))
        for kind, counts in d["rows"].items():
            rows.append(
                (f"rows {kind}", f"train {counts['train']}, validation {counts['validation']}")
            )
        rows.extend(vote_table_rows(d))
    if "sft" in steps:
        rows.append(("sft final loss", fmt(steps["sft"].get("final_loss"))))
    if "rm" in steps:
        rows.append(("rm pairwise accuracy", fmt(accuracy(steps["rm"].get("pairwise_accuracy")))))
    if "rlhf" in steps:
        s = steps["rlhf"]
        rows.append(
            (
                "rlhf reward (first → last)",
                f"{fmt(s.get('initial_reward'))} → {fmt(s.get('final_reward'))}",
            )
        )
        rows.append(("rlhf final KL", fmt(s.get("final_kl"))))
    if "register" in steps:
        rows.append(("registered", ", ".join(steps["register"]["models"])))
    if "prelabel" in steps:
        p = steps["prelabel"]
        rows.append(("pre-labelled replies", f"{p['added']} on {p['prompts_seen']} prompts"))
    if "report" in steps:
        rows.extend(report_table_rows(steps["report"]))
    return rows


def vote_table_rows(datasets: dict[str, Any]) -> list[tuple[str, str]]:
    """The datasets step's new rows and rows from votes on model candidates, per model."""
    rows = []
    if datasets.get("new_rows") is not None:
        new = ", ".join(f"{k} {v:+d}" for k, v in datasets["new_rows"].items())
        rows.append((f"new since {Path(datasets['previous_turn']).name}", new))
    votes = datasets.get("from_votes")
    if votes:
        rows.append(
            (
                "rows from votes on candidates",
                f"pairs {votes['pairs']}, kto {votes['kto']}, sft {votes['sft']}",
            )
        )
        for model, counts in votes["models"].items():
            figures = ", ".join(f"{k} {v}" for k, v in counts.items())
            rows.append((f"  by {model}", figures))
    return rows


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _player(p: dict[str, Any] | None) -> str:
    if not p:
        return "not compared yet"
    low, high = p["interval"]
    return f"{p['strength']:+.2f} [{low:+.2f}, {high:+.2f}] ({p['votes']} votes)"


def report_table_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The report step's held-out figures: RM validation accuracy, mean reward of the new
    policy vs the previous one, their arena strengths."""
    rm = report["rm_validation"]
    rows = [
        (
            "rm validation accuracy",
            f"{_fmt(rm['accuracy'])} on {rm['pairs']} pairs ({rm['split']}), "
            f"{rm['skipped_too_long']} too long",
        )
    ]
    rewards = report["held_out_reward"]
    if rewards.get("policy"):
        new, old = rewards["policy"], rewards["previous"]
        rows.append(
            (
                f"held-out mean reward ({rewards['prompts']} prompts)",
                f"new {_fmt(new['mean'], '+.3f')} vs previous {_fmt(old['mean'], '+.3f')}"
                f" (gain {_fmt(rewards['gain'], '+.3f')})",
            )
        )
    else:
        rows.append(("held-out mean reward", rewards.get("note", "-")))
    strength = report["strength"]
    anchor = strength["anchor"] or "the mean"
    rows.append((f"policy strength vs {anchor}", _player(strength["policy"])))
    rows.append((f"previous ({report['previous_policy']})", _player(strength["previous"])))
    rows.append(("report", Path(report["report_png"]).name))
    return rows
