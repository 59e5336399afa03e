"""One training run: check inputs, train, write the run folder atomically.

`train()` is the entry point the CLI and the flywheel call. Everything that can be wrong with
the inputs (data, options, model, output folder) is checked before a byte is written. The run
then trains in a staging folder beside OUT (`.OUT.partial`) and renames it into place at the
end, so a crash never leaves a folder that looks like a finished model. A folder counts as a
finished run when it holds metrics.json; only such a folder is replaced by a new run.

Each kind lives in its own module (training.sft, .reward, .dpo, .kto, .rlhf) with
`model_defaults(spec)` (defaults that depend on the model), `check(spec)` (raise before
writing), `build_trainer(spec)`, `extra_metrics(trainer, spec)` and optionally
`plot_notes(spec)`.
"""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.config import KINDS, Resolved, resolve
from training.data import TrainingData, load
from training.errors import TrainingModelError, TrainingOptionsError

KIND_MODULES = {
    "sft": "training.sft",
    "rm": "training.reward",
    "dpo": "training.dpo",
    "kto": "training.kto",
    "rlhf": "training.rlhf",
}
METRICS = "metrics.json"
CURVES = "curves.png"


@dataclass(frozen=True)
class RunResult:
    out: Path
    metrics: dict[str, Any]


@dataclass
class RunSpec:
    """What a kind module needs to build its trainer."""

    kind: str
    model: str
    data: TrainingData
    tokenizer: Any
    model_config: Any
    reward_model: str | None = None
    ref_model: str | None = None
    resolved: Resolved | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # kind-specific facts for metrics.json

    @property
    def args(self) -> Any:
        assert self.resolved is not None
        return self.resolved.args

    @property
    def own(self) -> dict[str, Any]:
        assert self.resolved is not None
        return self.resolved.own

    def length_defaults(self, cap: int = 2048) -> dict[str, Any]:
        """max_length no longer than the model's positions: longer rows would index past them."""
        positions = max_positions(self.model_config)
        return {"max_length": min(cap, positions)} if positions else {}

    def eval_dataset(self, columns: list[str]) -> Any:
        """The validation rows when the user asked for evaluation (eval_strategy), else None."""
        if self.args.eval_strategy == "no":
            return None
        return self.data.validation.select_columns(columns)

    def check_eval(self) -> None:
        if self.args.eval_strategy != "no" and len(self.data.validation) == 0:
            raise TrainingOptionsError(
                f"eval_strategy={self.args.eval_strategy} but "
                f"{self.data.folder} has an empty validation split"
            )


def load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise TrainingModelError(f"cannot load the tokenizer of {model!r}: {e}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingModelError(
            f"{model!r} has no chat template; the datasets are conversations, so use a "
            "chat/instruct model or add a template to its tokenizer_config"
        )
    return tokenizer


def load_model_config(model: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise TrainingModelError(f"cannot load the config of {model!r}: {e}") from None


def max_positions(config: Any) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "max_position_embeddings", None)


def load_causal_lm(path: str, args: Any) -> Any:
    """A policy or reference model loaded the way TRL loads a model given by name."""
    from trl.trainer.utils import create_model_from_path

    try:
        return create_model_from_path(path, **dict(args.model_init_kwargs or {}))
    except (OSError, ValueError) as e:
        raise TrainingModelError(f"cannot load model {path!r}: {e}") from None


def reference_trainer(trainer_class: Any, spec: RunSpec, columns: list[str]) -> Any:
    """DPO and KTO: the policy by path (TRL reloads the reference from it) or an explicit
    reference model, on the kind's columns."""
    ref = load_causal_lm(spec.ref_model, spec.args) if spec.ref_model else None
    return trainer_class(
        model=spec.model,
        ref_model=ref,
        args=spec.args,
        train_dataset=spec.data.train.select_columns(columns),
        eval_dataset=spec.eval_dataset(columns),
        processing_class=spec.tokenizer,
    )


def staging_path(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def check_out(out: Path, data: Path) -> None:
    if out.exists() and not out.is_dir():
        raise TrainingOptionsError(f"--out {out} is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / METRICS).is_file():
        raise TrainingOptionsError(
            f"--out {out} is not empty and holds no {METRICS} (not an earlier run); "
            "pick another folder"
        )
    if out.resolve() == Path(data).resolve() or Path(data).resolve() in out.resolve().parents:
        raise TrainingOptionsError("--out must not be inside the dataset folder")


def publish(staging: Path, out: Path) -> None:
    """Move the finished run into place; an earlier run in OUT is replaced only now."""
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


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
    import torch

    if gpu:
        return {
            "type": "cuda",
            "name": torch.cuda.get_device_name(0),
            "count": torch.cuda.device_count(),
        }
    return {"type": "cpu", "threads": torch.get_num_threads()}


def versions() -> dict[str, str]:
    import datasets
    import torch
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "datasets": datasets.__version__,
    }


def last(log_history: list[dict[str, Any]], key: str) -> float | None:
    for entry in reversed(log_history):
        if isinstance(entry.get(key), (int, float)):
            return float(entry[key])
    return None


def base_metrics(spec: RunSpec, trainer: Any, output: Any) -> dict[str, Any]:
    assert spec.resolved is not None
    history = list(trainer.state.log_history)
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
        "final_loss": last(history, "loss"),  # the last logged value
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


def _check_kind(kind: str) -> Any:
    if kind not in KINDS:
        raise TrainingOptionsError(
            f"unknown training kind {kind!r}; choose from {', '.join(KINDS)}"
        )
    return importlib.import_module(KIND_MODULES[kind])


def train(
    kind: str,
    *,
    data: Path,
    model: str,
    out: Path,
    options: dict[str, Any] | None = None,
    reward_model: str | None = None,
    ref_model: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Train ``model`` on the ``kind`` rows of the dataset build ``data``; write the run
    folder ``out`` (model, tokenizer, metrics.json, dataset_manifest.json, curves.png)."""
    module = _check_kind(kind)
    out, model = Path(out), str(model)
    check_out(out, Path(data))
    staging = staging_path(out)
    dataset = load(Path(data), kind)
    spec = RunSpec(
        kind,
        model,
        dataset,
        load_tokenizer(model),
        load_model_config(model),
        reward_model=str(reward_model) if reward_model else None,
        ref_model=str(ref_model) if ref_model else None,
    )
    spec.resolved = resolve(
        kind, options, staging, progress=progress, model_defaults=module.model_defaults(spec)
    )
    spec.check_eval()
    module.check(spec)

    from accelerate import PartialState

    main = PartialState().is_main_process
    new_parents = [p for p in staging.parents if not p.exists()]  # deepest first
    if main:
        shutil.rmtree(staging, ignore_errors=True)  # left by a crashed run
        staging.mkdir(parents=True)
    try:
        with quiet(progress):
            try:
                trainer = module.build_trainer(spec)
            except OSError as e:
                raise TrainingModelError(f"cannot load a model for `train {kind}`: {e}") from None
            except ValueError as e:
                raise TrainingOptionsError(f"the {kind} trainer rejected its setup: {e}") from None
            if not progress:
                from transformers.trainer_callback import PrinterCallback

                trainer.remove_callback(PrinterCallback)  # it prints every log dict without a bar
            output = trainer.train()
            restore_use_cache(trainer, spec)
            trainer.save_model(str(staging))
            metrics = {**base_metrics(spec, trainer, output), **module.extra_metrics(trainer, spec)}
        if trainer.is_world_process_zero():
            spec.tokenizer.save_pretrained(str(staging))
            dataset.write_manifest(staging)
            (staging / METRICS).write_text(json.dumps(metrics, indent=2, default=str) + "\n")
            from training.curves import plot

            plot(
                kind,
                metrics["log_history"],
                staging / CURVES,
                title=f"{kind}: {Path(model).name} on {dataset.folder}",
                notes=module.plot_notes(spec) if hasattr(module, "plot_notes") else None,
            )
        trainer.accelerator.wait_for_everyone()
        if trainer.is_world_process_zero():
            publish(staging, out)
        trainer.accelerator.wait_for_everyone()  # every process returns with OUT in place
    except BaseException:
        if main:
            shutil.rmtree(staging, ignore_errors=True)
            for parent in new_parents:  # folders made for OUT go too, so a failure leaves no trace
                try:
                    parent.rmdir()
                except OSError:
                    break
        raise
    return RunResult(out, metrics)
