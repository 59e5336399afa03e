"""curves.png: a run's training curves, drawn from the trainer's log_history.

Each kind has a loss panel and the panels its trainer's own signal lives in (pairwise
accuracy for the RM, implicit-reward accuracy for DPO, reward and KL for RLHF). Required
panels are drawn even when nothing was logged for them, with a note saying so, so a
missing KL curve reads as "beta was 0" rather than as a broken plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# (title, log keys to draw, required): the first key of each group that appears is drawn,
# plus every key matching a "prefix*" pattern.
PANELS: dict[str, list[tuple[str, tuple[str, ...], bool]]] = {
    "sft": [
        ("loss", ("loss", "eval_loss"), True),
        ("token accuracy", ("mean_token_accuracy", "eval_mean_token_accuracy"), False),
    ],
    "rm": [
        ("loss", ("loss", "eval_loss"), True),
        ("pairwise accuracy (batch)", ("accuracy", "eval_accuracy"), False),
        ("reward margin", ("margin", "eval_margin"), False),
    ],
    "dpo": [
        ("loss", ("loss", "eval_loss"), True),
        ("implicit reward accuracy", ("rewards/accuracies", "eval_rewards/accuracies"), False),
        ("implicit reward margin", ("rewards/margins", "eval_rewards/margins"), False),
    ],
    "kto": [
        ("loss", ("loss", "eval_loss"), True),
        ("implicit rewards", ("rewards/chosen", "rewards/rejected"), False),
        ("KL", ("kl",), False),
    ],
    "rlhf": [
        ("loss", ("loss",), True),
        ("reward", ("reward", "rewards/*"), True),
        ("KL to reference", ("kl",), True),
    ],
}


def series(log_history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for entry in log_history:
        value = entry.get(key)
        if isinstance(value, (int, float)) and "step" in entry:
            steps.append(entry["step"])
            values.append(float(value))
    return steps, values


def _keys(log_history: list[dict[str, Any]], patterns: tuple[str, ...]) -> list[str]:
    present = {k for entry in log_history for k in entry}
    keys: list[str] = []
    for pattern in patterns:
        if pattern.endswith("*"):
            # per-function reward means; their std is noise on this plot
            keys += sorted(k for k in present if k.startswith(pattern[:-1]) and k.endswith("/mean"))
        elif pattern in present:
            keys.append(pattern)
    return keys


def plot(
    kind: str,
    log_history: list[dict[str, Any]],
    path: Path,
    title: str = "",
    notes: dict[str, str] | None = None,
) -> list[str]:
    """Draw the kind's panels into ``path``; returns the panel titles drawn with data.
    ``notes`` explain an empty panel (title -> text), e.g. why no KL was logged."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a headless box or a training node
    import matplotlib.pyplot as plt

    panels = [
        (t, _keys(log_history, keys))
        for t, keys, required in PANELS[kind]
        if required or _keys(log_history, keys)
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    drawn = []
    for ax, (panel_title, keys) in zip(axes[0], panels):
        for key in keys:
            steps, values = series(log_history, key)
            ax.plot(steps, values, marker="." if len(steps) < 30 else None, label=key)
        if keys:
            drawn.append(panel_title)
            ax.legend(fontsize=7)
        else:
            note = (notes or {}).get(panel_title)
            ax.text(
                0.5,
                0.5,
                f"not logged\n{note}" if note else "not logged",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        ax.set_title(panel_title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn
