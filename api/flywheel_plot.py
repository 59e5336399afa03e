"""report.png of a flywheel turn: four panels drawn from the turn report's figures.

1. the arena leaderboard: Bradley-Terry strengths with their 95% bootstrap intervals;
2. the reward model's validation pairwise accuracy per registered turn (chance at 0.5);
3. per turn, the mean reward of the new policy and of the previous one on held-out prompts;
4. this turn's rows from votes on model candidates, per model and kind.

A panel without data says so instead of staying blank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _leaderboard(ax: Any, strengths: dict[str, Any]) -> None:
    board = strengths.get("leaderboard") or []
    ax.set_title(f"arena: Bradley-Terry strength vs {strengths.get('anchor') or 'the mean'}")
    if not board:
        _empty(ax, "no rankings compare models yet")
        return
    rows = list(reversed(board))  # strongest at the top
    y = range(len(rows))
    s = [p["strength"] for p in rows]
    low = [p["strength"] - p["interval"][0] for p in rows]
    high = [p["interval"][1] - p["strength"] for p in rows]
    ax.errorbar(s, y, xerr=[low, high], fmt="o", capsize=3)
    ax.set_yticks(list(y), [f"{p['player']} ({p['votes']} votes)" for p in rows], fontsize=7)
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("log-odds (95% interval)")


def _per_turn(ax: Any, turns: list[dict[str, Any]], keys: dict[str, str], title: str) -> None:
    ax.set_title(title)
    names = [str(t["turn"]) for t in turns]
    drawn = False
    for key, label in keys.items():
        points = [(i, t[key]) for i, t in enumerate(turns) if t.get(key) is not None]
        if points:
            ax.plot([i for i, _ in points], [v for _, v in points], marker="o", label=label)
            drawn = True
    if not drawn:
        _empty(ax, "not measured yet")
        return
    ax.set_xticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("turn")
    ax.legend(fontsize=7)


def _votes(ax: Any, from_votes: dict[str, Any] | None) -> None:
    ax.set_title("rows from votes on model candidates")
    models = (from_votes or {}).get("models") or {}
    if not models:
        _empty(ax, "no rows hold a model-written reply")
        return
    names = list(models)
    bottom = [0] * len(names)
    for kind in ("pairs", "kto", "sft"):
        counts = [models[m].get(kind, 0) for m in names]
        ax.bar(range(len(names)), counts, bottom=bottom, label=kind)
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_xticks(range(len(names)), names, fontsize=7, rotation=20)
    ax.set_ylabel("rows")
    ax.legend(fontsize=7)


def plot_report(
    path: Path, report: dict[str, Any], turns: list[dict[str, Any]], title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: a headless box or a training node
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    _leaderboard(axes[0][0], report.get("strength") or {})
    _per_turn(
        axes[0][1],
        turns,
        {"rm_accuracy": "RM validation accuracy"},
        "reward model: pairwise accuracy on validation pairs",
    )
    axes[0][1].axhline(0.5, color="grey", lw=0.8, ls="--")  # chance
    axes[0][1].set_ylim(0.0, 1.0)
    _per_turn(
        axes[1][0],
        turns,
        {"policy_reward": "new policy", "previous_reward": "previous policy"},
        "mean reward on held-out prompts (this turn's RM)",
    )
    _votes(axes[1][1], report.get("from_votes"))
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
