"""Experiment tracking (`report_to`): each tracker's package must be installed, or the run
fails before anything is written with the package to install, instead of transformers'
RuntimeError traceback once the trainer is built.

TensorBoard writes its event files into the run folder (`runs/`, published with the
model); wandb runs offline unless WANDB_MODE says otherwise (no account needed, the run
can be synced later with `wandb sync`), with its files in the run folder too.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from training.errors import TrainingOptionsError

# tracker -> (modules of which one must import, what to install)
PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), "pip install 'dataengine[tensorboard]'"),
    "wandb": (("wandb",), "pip install wandb"),
    "mlflow": (("mlflow",), "pip install mlflow"),
    "trackio": (("trackio",), "pip install trackio"),
    "comet_ml": (("comet_ml",), "pip install comet_ml"),
}


def trackers(report_to: Any) -> list[str]:
    if report_to in (None, "none", ["none"]):
        return []
    if isinstance(report_to, str):
        return [report_to]
    return [str(t) for t in report_to]


def check(report_to: Any) -> None:
    for tracker in trackers(report_to):
        modules, install = PACKAGES.get(tracker, ((), ""))
        if modules and not any(importlib.util.find_spec(m) for m in modules):
            raise TrainingOptionsError(
                f"report_to={tracker} needs the {modules[0]} package, which is not "
                f"installed: {install}"
            )


def prepare(report_to: Any, run_folder: Path) -> None:
    """wandb: offline by default, its files beside the model."""
    if "wandb" in trackers(report_to):
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(run_folder))
