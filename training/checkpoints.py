"""Checkpoints of a run in progress: where they live, resuming, stopping on a signal.

A run trains in `.OUT.partial` and the trainer writes its checkpoint-N folders there
(`save_strategy`/`save_steps`), so a run that stops early keeps them and `--resume`
continues from the newest. Ctrl-C or SIGTERM asks the trainer to save a checkpoint at the
end of the current step and stop (a second signal stops at once); the run then ends with
TrainingInterrupted and the partial folder stays. `run.json` in that folder says what
was being trained, so a resume with another model or dataset is refused, not mixed.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from training.errors import TrainingError, TrainingOptionsError

RUN_FILE = "run.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(TrainingError):
    """A signal stopped the run; its checkpoint is kept for --resume."""


def checkpoints(folder: Path) -> list[Path]:
    """checkpoint-N folders with a trainer state, oldest first."""
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file()
    ]
    return [p for _, p in sorted(found)]


def finished(checkpoint: Path) -> bool:
    """The checkpoint of the run's last step (it crashed after training)."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return bool(state.get("max_steps")) and state["global_step"] >= state["max_steps"]


def restore_finished(trainer: Any, checkpoint: str) -> Any:
    """Load a finished run's last checkpoint instead of training: transformers would train
    one step past max_steps when resumed at its end."""
    from transformers.trainer_callback import TrainerState
    from transformers.trainer_utils import TrainOutput

    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    history = trainer.state.log_history
    losses = [e["loss"] for e in history if isinstance(e.get("loss"), (int, float))]
    mean = sum(losses) / len(losses) if losses else 0.0
    return TrainOutput(trainer.state.global_step, mean, {})


def identity(kind: str, model: str, data: Any) -> dict[str, Any]:
    provenance = data.provenance()
    return {
        "kind": kind,
        "model": model,
        "data": provenance["path"],
        "log_position": provenance["log_position"],
        "digest": provenance["digest"],
    }


def plan_resume(staging: Path, resume: bool | str, explicit: Any, ident: dict[str, Any]) -> Any:
    """The checkpoint to start from (None: a fresh start); raises before anything is written.

    ``resume``: True insists on a checkpoint in the partial folder, "auto" takes one when
    there is one, False starts afresh but refuses to discard an interrupted run's
    checkpoints. ``explicit`` is `resume_from_checkpoint` as the user set it (a path, or
    true for the newest)."""
    if explicit is True:
        resume = True
    elif explicit not in (None, False, ""):
        path = Path(str(explicit)).expanduser()
        if not (path / "trainer_state.json").is_file():
            raise TrainingOptionsError(
                f"resume_from_checkpoint={explicit}: no checkpoint there (no trainer_state.json)"
            )
        return str(path)
    found = checkpoints(staging)
    if resume is True and not found:
        raise TrainingOptionsError(
            f"nothing to resume: {staging} holds no checkpoint (the run finished, never "
            "started, or saved none: set save_steps)"
        )
    if found and not resume:
        raise TrainingOptionsError(
            f"{staging} holds the checkpoints of an interrupted run (last: {found[-1].name}); "
            "add --resume to continue it, or delete that folder to start over"
        )
    if not found:
        return None
    recorded = _read_run(staging)
    if recorded is not None:
        for key, value in ident.items():
            if recorded.get(key) != value:
                raise TrainingOptionsError(
                    f"cannot resume: the interrupted run in {staging} had {key} "
                    f"{recorded.get(key)!r}, this one {value!r}"
                )
    return str(found[-1])


def _read_run(staging: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads((staging / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def write_run(staging: Path, ident: dict[str, Any]) -> None:
    (staging / RUN_FILE).write_text(json.dumps(ident, indent=2) + "\n")


def _any_process(flag: bool) -> bool:
    """Every process must stop at the same step, or the checkpoint's collectives hang."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    import torch
    from accelerate import PartialState

    value = torch.tensor([int(flag)], device=PartialState().device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def stop_callback() -> Any:
    """A TrainerCallback that saves a checkpoint and stops after the step a signal hit."""
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def __init__(self) -> None:
            self.signal: int | None = None
            self.stopped_at: int | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if _any_process(self.signal is not None):
                control.should_save = True
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

    return StopOnSignal()


@contextmanager
def signals_stop(callback: Any) -> Iterator[None]:
    """While training, the first SIGINT/SIGTERM asks for a checkpoint and a stop; the
    second raises KeyboardInterrupt at once. Outside the main thread nothing changes."""

    def handler(signum: int, frame: Any) -> None:
        if callback.signal is not None:
            raise KeyboardInterrupt
        callback.signal = signum
        print(
            f"\n{signal.Signals(signum).name}: saving a checkpoint after this step, then "
            "stopping (again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in SIGNALS:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals stay as they were
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
