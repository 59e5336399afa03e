"""What a finished run records about itself (metrics.json) and how quietly it trains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from training.spec import RunSpec, last


@contextmanager
def quiet(progress: bool) -> Iterator[None]:
    """Without progress, also hide the map/filter bars of datasets and the weight-loading
    bars of transformers (the trainer's own bar follows disable_tqdm)."""
    from datasets.utils import logging as ds_logging
    from transformers.utils import logging as tf_logging

    switches = [
        (
            ds_logging.is_progress_bar_enabled(),
            ds_logging.disable_progress_bar,
            ds_logging.enable_progress_bar,
        ),
        (
            tf_logging.is_progress_bar_enabled(),
            tf_logging.disable_progress_bar,
            tf_logging.enable_progress_bar,
        ),
    ]
    if not progress:
        for was, off, _ in switches:
            if was:
                off()
    try:
        yield
    finally:
        if not progress:
            for was, _, on in switches:
                if was:
                    on()


def device_info(gpu: bool) -> dict[str, Any]:
    """The devices of this process and how many processes train together (world size)."""
    import torch
    from accelerate import PartialState

    state = PartialState()
    world = {"world_size": state.num_processes, "distributed_type": str(state.distributed_type)}
    if gpu:
        return {
            "type": "cuda",
            "name": torch.cuda.get_device_name(0),
            "count": torch.cuda.device_count(),
            **world,
        }
    return {"type": "cpu", "threads": torch.get_num_threads(), **world}


def versions() -> dict[str, str]:
    import datasets
    import torch
    import transformers
    import trl

    found = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "datasets": datasets.__version__,
    }
    try:
        import peft

        found["peft"] = peft.__version__
    except ImportError:
        pass
    return found


def validation_figure(history: list[dict[str, Any]], key: str) -> tuple[float | None, str]:
    """A headline figure from the last evaluation on the validation split; the training
    log's last value only when there was no evaluation (and the split says so)."""
    value = last(history, f"eval_{key}")
    if value is not None:
        return value, "validation"
    return last(history, key), "train"


def base_metrics(spec: RunSpec, trainer: Any, output: Any) -> dict[str, Any]:
    assert spec.resolved is not None
    history = list(trainer.state.log_history)
    final_loss, loss_split = validation_figure(history, "loss")
    return {
        "kind": spec.kind,
        "base_model": spec.model,
        "reward_model": spec.reward_model,
        "ref_model": spec.ref_model,
        "dataset": spec.data.provenance(),
        "options": spec.resolved.overrides,
        "own_options": spec.own,
        "device": {**device_info(spec.resolved.gpu), "bf16": bool(spec.args.bf16)},
        "train_samples": len(spec.data.train),
        "validation_samples": len(spec.data.validation),
        "global_step": output.global_step,
        "train_loss": output.training_loss,  # mean over the run (the trainer's figure)
        "final_loss": final_loss,  # the last validation loss (train loss without validation)
        "final_loss_split": loss_split,
        "final_train_loss": last(history, "loss"),
        "train_runtime": output.metrics.get("train_runtime"),
        **spec.notes,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "trainer_config": json.loads(json.dumps(spec.args.to_dict(), default=str)),
        "log_history": history,
    }


def restore_use_cache(trainer: Any, spec: RunSpec) -> None:
    """Training turns the KV cache off in the model's config; the saved model is for
    inference (prelabeling, the next round), so give it back the base model's setting."""
    config = getattr(trainer.accelerator.unwrap_model(trainer.model), "config", None)
    if config is not None and hasattr(config, "use_cache"):
        config.use_cache = getattr(spec.model_config, "use_cache", True)
