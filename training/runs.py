"""One training run: check inputs, train, write the run folder atomically.

`train()` is the entry point the CLI and the flywheel call. Everything that can be wrong with
the inputs (data, options, model, output folder) is checked before a byte is written. The run
then trains in a staging folder beside OUT (`.OUT.partial`) and renames it into place at the
end, so a crash never leaves a folder that looks like a finished model. A folder counts as a
finished run when it holds metrics.json; only such a folder is replaced by a new run.

The partial folder also holds the trainer's checkpoints and the rows being trained on (with
the datasets caches, so nothing is ever written into the build): a run stopped by a signal
or a crash after its first checkpoint keeps it, and `resume` continues from there
(training.checkpoints). Publishing drops checkpoints and caches.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training import checkpoints as ckpt
from training import lora as lora_support
from training import tracking, validation
from training.config import KINDS, own_options, resolve
from training.data import CACHE, load
from training.errors import TrainingModelError, TrainingOptionsError
from training.report import base_metrics, quiet, restore_use_cache
from training.spec import (  # noqa: F401 (re-exported for the kind modules' users)
    RunSpec,
    last,
    load_causal_lm,
    load_model_config,
    load_tokenizer,
    max_positions,
    reference_trainer,
)
from training.vision import text_tokenizer

KIND_MODULES = {
    "sft": "training.sft",
    "rm": "training.reward",
    "dpo": "training.dpo",
    "kto": "training.kto",
    "rlhf": "training.rlhf",
}
METRICS = "metrics.json"
CURVES = "curves.png"
REGISTERED = "registered.json"  # written by training.registry.register into a model folder


@dataclass(frozen=True)
class RunResult:
    out: Path
    metrics: dict[str, Any]


def staging_path(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def check_out(out: Path, data: Path, replace_registered: bool = False) -> None:
    if out.exists() and not out.is_dir():
        raise TrainingOptionsError(f"--out {out} is a file")
    if (out / REGISTERED).is_file() and not replace_registered:
        name = json.loads((out / REGISTERED).read_text()).get("name", "?")
        raise TrainingOptionsError(
            f"--out {out} holds the registered model {name!r}; training there would replace "
            "its weights: pick another folder"
        )
    if out.is_dir() and any(out.iterdir()) and not (out / METRICS).is_file():
        raise TrainingOptionsError(
            f"--out {out} is not empty and holds no {METRICS} (not an earlier run); "
            "pick another folder"
        )
    if out.resolve() == Path(data).resolve() or Path(data).resolve() in out.resolve().parents:
        raise TrainingOptionsError("--out must not be inside the dataset folder")


def publish(staging: Path, out: Path) -> None:
    """Move the finished run into place; an earlier run in OUT is replaced only now."""
    for leftover in ckpt.checkpoints(staging) + [staging / CACHE]:
        shutil.rmtree(leftover, ignore_errors=True)
    (staging / ckpt.RUN_FILE).unlink(missing_ok=True)
    if (out / REGISTERED).is_file():  # a replaced registered model stays marked
        shutil.copyfile(out / REGISTERED, staging / REGISTERED)
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _check_kind(kind: str) -> Any:
    if kind not in KINDS:
        raise TrainingOptionsError(
            f"unknown training kind {kind!r}; choose from {', '.join(KINDS)}"
        )
    return importlib.import_module(KIND_MODULES[kind])


@dataclass
class Prepared:
    spec: RunSpec
    module: Any
    staging: Path
    checkpoint: str | None  # resume from here
    lora: dict[str, Any] | None


def prepare(
    kind: str,
    data: Path,
    model: str,
    out: Path,
    options: dict[str, Any] | None,
    models: dict[str, str | None],
    progress: bool,
    resume: bool | str,
    lora: str | dict[str, Any] | None,
    replace_registered: bool = False,
) -> Prepared:
    """Every check a run makes before it writes anything."""
    module = _check_kind(kind)
    check_out(out, data, replace_registered)
    staging = staging_path(out)
    options = dict(options or {})
    explicit = options.pop("resume_from_checkpoint", None)  # the Trainer ignores it: we pass it
    lora_spec = lora_support.parse(lora) if isinstance(lora, str) else lora
    if lora_spec:
        lora_support.check_installed()
    dataset = load(data, kind)
    own = own_options(kind, options)
    split = validation.split(dataset, own["val_fraction"], own["val_min"])
    extra: dict[str, Any] = dict(models)
    spec = RunSpec(kind, model, dataset, load_tokenizer(model), load_model_config(model), **extra)
    spec.resolved = resolve(
        kind,
        options,
        staging,
        progress=progress,
        model_defaults=module.model_defaults(spec),
        evaluate=len(dataset.validation) > 0,
    )
    if lora_spec:
        quantized = lora_support.quantization(lora_spec, spec.resolved.gpu)
        spec.args.model_init_kwargs = {**(spec.args.model_init_kwargs or {}), **quantized}
        spec.peft_config = lora_support.peft_config(lora_spec, kind)
        spec.notes["lora"] = {k: v for k, v in lora_spec.items()}
    spec.check_eval()
    module.check(spec)
    spec.notes["validation"] = split
    spec.notes["too_long"] = validation.too_long(
        kind, text_tokenizer(spec.tokenizer), dataset, getattr(spec.args, "max_length", None)
    )
    spec.notes["report_to"] = tracking.trackers(spec.args.report_to)
    ident = ckpt.identity(kind, model, dataset)
    checkpoint = ckpt.plan_resume(staging, resume, explicit, ident)
    spec.notes["resumed_from"] = Path(checkpoint).name if checkpoint else None
    return Prepared(spec, module, staging, checkpoint, lora_spec)


def _build(prepared: Prepared, progress: bool) -> Any:
    spec = prepared.spec
    try:
        trainer = prepared.module.build_trainer(spec)
    except OSError as e:
        raise TrainingModelError(f"cannot load a model for `train {spec.kind}`: {e}") from None
    except ValueError as e:
        raise TrainingOptionsError(f"the {spec.kind} trainer rejected its setup: {e}") from None
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # it prints every log dict without a bar
    return trainer


def _fit(prepared: Prepared, trainer: Any) -> Any:
    """Train, stopping with a checkpoint on SIGINT/SIGTERM (TrainingInterrupted)."""
    if prepared.checkpoint and ckpt.finished(Path(prepared.checkpoint)):
        return ckpt.restore_finished(trainer, prepared.checkpoint)
    stopper = ckpt.stop_callback()
    trainer.add_callback(stopper)
    with ckpt.signals_stop(stopper):
        output = trainer.train(resume_from_checkpoint=prepared.checkpoint)
    state = trainer.state
    if stopper.signal is not None and state.global_step < state.max_steps:
        raise ckpt.TrainingInterrupted(
            f"interrupted at step {state.global_step} of {state.max_steps}; the checkpoint is "
            f"in {prepared.staging}: run the same command with --resume to continue"
        )
    return output


def _write(prepared: Prepared, trainer: Any, metrics: dict[str, Any]) -> None:
    spec, staging = prepared.spec, prepared.staging
    if prepared.lora and prepared.lora["merge"]:
        lora_support.merge(
            staging,
            spec.model,
            spec.kind,
            spec.tokenizer,
            getattr(spec.model_config, "use_cache", True),
        )
    spec.tokenizer.save_pretrained(str(staging))
    spec.data.write_manifest(staging)
    (staging / METRICS).write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    from training.curves import plot

    plot(
        spec.kind,
        metrics["log_history"],
        staging / CURVES,
        title=f"{spec.kind}: {Path(spec.model).name} on {spec.data.folder}",
        notes=prepared.module.plot_notes(spec) if hasattr(prepared.module, "plot_notes") else None,
    )


def _start(prepared: Prepared) -> list[Path]:
    """Create (or, resuming, keep) the partial folder and move the rows into it; returns
    the folders made for it, deepest first, to remove again if nothing is kept."""
    from accelerate import PartialState

    state, staging = PartialState(), prepared.staging
    new_parents = [p for p in staging.parents if not p.exists()]
    spec = prepared.spec
    if state.is_main_process:
        if prepared.checkpoint is None:
            shutil.rmtree(staging, ignore_errors=True)  # left by a run that saved nothing
        staging.mkdir(parents=True, exist_ok=True)
        ckpt.write_run(staging, ckpt.identity(spec.kind, spec.model, spec.data))
    spec.data.relocate(staging / CACHE, write=state.is_main_process)
    tracking.prepare(spec.args.report_to, staging)
    return new_parents


def _abandon(staging: Path, new_parents: list[Path]) -> None:
    """A failed run: keep its checkpoints for --resume, else leave no trace."""
    kept = ckpt.checkpoints(staging)
    if kept:
        print(
            f"checkpoints kept in {staging} (last {kept[-1].name}): --resume continues",
            file=sys.stderr,
        )
        return
    shutil.rmtree(staging, ignore_errors=True)
    for parent in new_parents:  # folders made for OUT go too
        try:
            parent.rmdir()
        except OSError:
            break


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
    resume: bool | str = False,
    lora: str | dict[str, Any] | None = None,
    replace_registered: bool = False,
) -> RunResult:
    """Train ``model`` on the ``kind`` rows of the dataset build ``data``; write the run
    folder ``out`` (model or adapter, tokenizer, metrics.json, dataset_manifest.json,
    curves.png). ``resume``: True continues an interrupted run from its last checkpoint,
    "auto" does when there is one; ``lora``: a `--lora` spec (training.lora);
    ``replace_registered``: the caller owns the registered model in ``out`` (the flywheel
    redoing its own step), else such a folder is refused."""
    out, model = Path(out), str(model)
    models = {
        "reward_model": str(reward_model) if reward_model else None,
        "ref_model": str(ref_model) if ref_model else None,
    }
    prepared = prepare(
        kind, Path(data), model, out, options, models, progress, resume, lora, replace_registered
    )
    from accelerate import PartialState

    main = PartialState().is_main_process
    with quiet(progress):
        new_parents = _start(prepared)
    spec = prepared.spec
    try:
        with quiet(progress):
            trainer = _build(prepared, progress)
            output = _fit(prepared, trainer)
            restore_use_cache(trainer, spec)
            trainer.save_model(str(prepared.staging))
            metrics = {
                **base_metrics(spec, trainer, output),
                **prepared.module.extra_metrics(trainer, spec),
            }
            if trainer.is_world_process_zero():
                _write(prepared, trainer, metrics)
        trainer.accelerator.wait_for_everyone()
        if trainer.is_world_process_zero():
            publish(prepared.staging, out)
        trainer.accelerator.wait_for_everyone()  # every process returns with OUT in place
    except BaseException:
        if main:
            _abandon(prepared.staging, new_parents)
        raise
    return RunResult(out, metrics)
