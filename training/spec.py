"""What a kind module gets to build its trainer (RunSpec), and loading the models it names.

Each kind lives in its own module (training.sft, .reward, .dpo, .kto, .rlhf) with
`model_defaults(spec)` (defaults that depend on the model), `check(spec)` (raise before
writing), `build_trainer(spec)`, `extra_metrics(trainer, spec)` and optionally
`plot_notes(spec)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data import TrainingData
from training.errors import TrainingModelError, TrainingOptionsError
from training.tiny_vlm import is_vision_model
from training.vision import load_processor, with_images


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
    resolved: Any = None  # training.config.Resolved
    notes: dict[str, Any] = field(default_factory=dict)  # kind-specific facts for metrics.json
    peft_config: Any = None  # a peft LoraConfig when the run trains an adapter

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
        """The validation rows when the run evaluates (eval_strategy), else None."""
        if self.args.eval_strategy == "no":
            return None
        return self.data.validation.select_columns(columns)

    def check_eval(self) -> None:
        if self.args.eval_strategy != "no" and len(self.data.validation) == 0:
            raise TrainingOptionsError(
                f"eval_strategy={self.args.eval_strategy} but "
                f"{self.data.folder} has an empty validation split"
            )


def _looks_local(model: str) -> bool:
    """A path the user meant as a folder: absolute, relative with ./ or ~, or deeper than
    a hub id's `org/name`."""
    return model.startswith((".", "~", "/")) or model.count("/") > 1 or "\\" in model


def check_model_folder(model: str, what: str = "model") -> None:
    """A missing local folder is reported as such, not as the hub's "Repo id must be ..."."""
    if _looks_local(model) and not Path(model).expanduser().exists():
        raise TrainingModelError(f"{what} folder not found: {model}")


def load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    check_model_folder(model)
    if is_vision_model(model):  # an image-text-to-text model trains with its processor
        return load_processor(model)
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


def load_model_config(model: str, what: str = "model") -> Any:
    from transformers import AutoConfig

    check_model_folder(model, what)
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

    check_model_folder(path)
    try:
        return create_model_from_path(path, **dict(args.model_init_kwargs or {}))
    except (OSError, ValueError) as e:
        raise TrainingModelError(f"cannot load model {path!r}: {e}") from None


def reference_trainer(trainer_class: Any, spec: RunSpec, columns: list[str]) -> Any:
    """DPO and KTO: the policy by path (TRL reloads the reference from it) or an explicit
    reference model, on the kind's columns. With LoRA the reference is the policy with its
    adapter switched off, so no second model is loaded."""
    ref = load_causal_lm(spec.ref_model, spec.args) if spec.ref_model else None
    return trainer_class(
        model=spec.model,
        ref_model=ref,
        args=spec.args,
        train_dataset=spec.data.train.select_columns(with_images(spec.data.train, columns)),
        eval_dataset=spec.eval_dataset(with_images(spec.data.train, columns)),
        processing_class=spec.tokenizer,
        peft_config=spec.peft_config,
    )


def last(log_history: list[dict[str, Any]], key: str) -> float | None:
    for entry in reversed(log_history):
        if isinstance(entry.get(key), (int, float)):
            return float(entry[key])
    return None
