"""The trainer configuration of a run: per-kind defaults, device settings, user overrides.

Precedence, lowest first: the kind's defaults, the device's settings, then the user's
options (a config file, then `--set`, then the CLI's own flags). User keys are checked
against the TRL config dataclass's fields, so a typo fails before any model loads instead
of being silently ignored. A few keys are ours, not TRL's (OWN_OPTIONS): they shape the
data rather than the trainer.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

from training import tracking
from training.errors import TrainingOptionsError

KINDS = ("sft", "rm", "dpo", "kto", "rlhf")

CONFIG_CLASSES = {
    "sft": "SFTConfig",
    "rm": "RewardConfig",
    "dpo": "DPOConfig",
    "kto": "KTOConfig",
    "rlhf": "GRPOConfig",
}

# Learning rates follow common practice for full fine-tuning: SFT 2e-5; the RM 1e-5 for one
# epoch (RMs overfit after one pass, InstructGPT); DPO/KTO/GRPO 1e-6 (TRL's defaults, near
# Zephyr's 5e-7). `logging_steps` below 1 is a ratio of the total steps: 100 points per curve
# however long the run, and every step of a short one.
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "sft": {
        "learning_rate": 2e-5,
        "num_train_epochs": 2,
        "max_length": 2048,
        "per_device_train_batch_size": 8,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,
    },
    "rm": {
        "learning_rate": 1e-5,
        "num_train_epochs": 1,
        "max_length": 2048,
        "per_device_train_batch_size": 4,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,
    },
    "dpo": {
        "learning_rate": 1e-6,
        "num_train_epochs": 1,
        "max_length": 2048,
        "beta": 0.1,
        "per_device_train_batch_size": 4,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1,
    },
    "kto": {
        "learning_rate": 1e-6,
        "num_train_epochs": 1,
        "max_length": 2048,
        "beta": 0.1,
        "per_device_train_batch_size": 8,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1,
    },
    "rlhf": {
        "learning_rate": 1e-6,
        "num_train_epochs": 1,
        "beta": 0.0,
        "num_generations": 4,
        "per_device_train_batch_size": 8,
        "max_completion_length": 256,
        "temperature": 1.0,
    },
}
# Checkpoints every 500 steps (transformers' default), the last two kept: an interrupted
# run resumes from them (training.checkpoints); a finished run drops them when published.
COMMON_DEFAULTS: dict[str, Any] = {
    "logging_steps": 0.01,
    "logging_first_step": True,
    "save_strategy": "steps",
    "save_steps": 500,
    "save_total_limit": 2,
    "report_to": "none",
    "seed": 42,
}
# With a validation split the run evaluates five times and at its end: the headline
# figures come from held-out rows, not from the last training batch.
EVAL_DEFAULTS: dict[str, Any] = {"eval_strategy": "steps", "eval_steps": 0.2}

# The validation split (training.validation): the build's, unless it is smaller than
# val_min rows or val_fraction is given; then train + validation are split again by tree.
VALIDATION_OPTIONS: dict[str, tuple[Any, str]] = {
    "val_fraction": (None, "re-split train + validation by tree at this fraction"),
    "val_min": (16, "fewest validation rows; a smaller build split is topped up by tree"),
}

# Ours, not the trainer's: name -> (default, help).
OWN_OPTIONS: dict[str, dict[str, tuple[Any, str]]] = {
    "sft": {**VALIDATION_OPTIONS},
    "dpo": {**VALIDATION_OPTIONS},
    "kto": {**VALIDATION_OPTIONS},
    "rm": {
        **VALIDATION_OPTIONS,
        "margin_scale": (1.0, "scales the margin column (rank gap) in the loss; 0 drops it"),
    },
    "rlhf": {
        **VALIDATION_OPTIONS,
        "max_prompt_length": (
            1024,
            ("prompts longer than this many tokens are left out (GRPO has no prompt truncation)"),
        ),
    },
}
# The types of our options whose default does not say it.
OWN_TYPES: dict[str, Any] = {"val_fraction": float | None}
# Set by the run itself.
RESERVED = {"output_dir": "the run writes where --out says"}

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def config_class(kind: str) -> type:
    import trl

    return getattr(trl, CONFIG_CLASSES[kind])


def coerce(value: Any) -> Any:
    """YAML 1.1 reads `1e-5` as a string (it wants `1.0e-5`); a learning rate must be a number."""
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value)
        integral = number.is_integer() and "." not in value and "e" not in value.lower()
        return int(number) if integral else number
    return value


def yaml_loader() -> Any:
    """SafeLoader with YAML 1.2 booleans (true/false only): `no`, `on`, `off` stay words, so
    `save_strategy: no` means the strategy "no"; check_types makes them booleans where a
    field takes one."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    bool_tag = "tag:yaml.org,2002:bool"
    Loader.yaml_implicit_resolvers = {
        first: [r for r in resolvers if r[0] != bool_tag]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return Loader


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`--set key=value` pairs; values are YAML scalars (`true`, `3`, `1e-5`, `[a, b]`)."""
    import yaml

    loader = yaml_loader()
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise TrainingOptionsError(f"--set expects key=value, not {item!r}")
        try:
            # a SafeLoader; an empty value is None: `--set max_length=` unsets
            value = yaml.load(raw, Loader=loader)
        except yaml.YAMLError as e:
            raise TrainingOptionsError(f"--set {key}: cannot parse {raw!r}: {e}") from None
        options[key.strip()] = coerce(value)
    return options


def read_config_file(path: Path | str) -> dict[str, Any]:
    """A YAML or JSON mapping of trainer options."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise TrainingOptionsError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        loaded = (
            json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=yaml_loader())
        )
    except (ValueError, yaml.YAMLError) as e:
        raise TrainingOptionsError(f"config file {path} cannot be parsed: {e}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise TrainingOptionsError(f"config file {path} must hold a mapping of option: value")
    return {str(k): coerce(v) for k, v in loaded.items()}


def gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def device_settings(kind: str, gpu: bool) -> dict[str, Any]:
    # TRL's configs default to bf16=True and checkpointing on, which fails (bf16) or only
    # slows things down (checkpointing, on models that fit anyway) on a CPU.
    if gpu:
        # dtype "auto": weights load in the checkpoint's dtype (bf16 for current models), as
        # TRL's own CLI does; fp32 master weights would not fit a 7B model with Adam on one GPU.
        settings: dict[str, Any] = {
            "bf16": True,
            "activation_checkpointing": True,
            "model_init_kwargs": {"dtype": "auto"},
        }
        if kind == "sft":
            settings["packing"] = True
        return settings
    return {"use_cpu": True, "bf16": False, "activation_checkpointing": False}


def check_keys(kind: str, options: dict[str, Any]) -> None:
    fields = {f.name for f in dataclasses.fields(config_class(kind))}
    known = fields | set(OWN_OPTIONS[kind])
    for key in options:
        if key in RESERVED:
            raise TrainingOptionsError(f"option {key!r} cannot be set: {RESERVED[key]}")
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise TrainingOptionsError(
                f"unknown option {key!r} for `train {kind}` ({CONFIG_CLASSES[kind]}){hint}"
            )


_SCALARS = (bool, int, float, str, type(None))
# YAML 1.1's other booleans: read as words (save_strategy=no is a word), made booleans only
# for a field that takes a boolean.
_WORDS = {"yes": True, "on": True, "y": True, "no": False, "off": False, "n": False}


def _scalar_types(hint: Any) -> tuple[type, ...] | None:
    """The scalar types a field accepts, or None when it takes more (enums, dicts, lists):
    those the config checks itself."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = typing.get_args(hint) if union else (hint,)
    return tuple(allowed) if all(t in _SCALARS for t in allowed) else None


def check_types(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """TRL's configs do not check types: `--set beta=abc` would fail mid-training. Check the
    scalar fields here, converting what converts without loss (3 -> 3.0, 1e3 -> 1000)."""
    try:
        hints = typing.get_type_hints(config_class(kind))
    except (NameError, TypeError):  # an annotation that does not resolve: the config checks
        hints = {}
    hints.update(
        {
            name: OWN_TYPES.get(name, type(default))
            for name, (default, _) in OWN_OPTIONS[kind].items()
        }
    )
    checked = dict(options)
    for key, value in options.items():
        if key not in hints:
            continue
        allowed = _scalar_types(hints[key])
        if allowed is None or type(value) in allowed:
            continue
        if isinstance(value, str) and bool in allowed and value.lower() in _WORDS:
            checked[key] = _WORDS[value.lower()]
        elif isinstance(value, int) and not isinstance(value, bool) and float in allowed:
            checked[key] = float(value)
        elif isinstance(value, float) and int in allowed and value.is_integer():
            checked[key] = int(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and str in allowed:
            checked[key] = str(value)
        else:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise TrainingOptionsError(f"option {key!r} must be {names}, not {value!r}")
    return checked


def _grpo_batch(settings: dict[str, Any], user: dict[str, Any]) -> None:
    """GRPO's generation batch must hold whole groups of num_generations completions; when
    the user changes only num_generations, round the batch up to a multiple of it."""
    batch_keys = {"per_device_train_batch_size", "generation_batch_size", "steps_per_generation"}
    n = user.get("num_generations")
    if isinstance(n, int) and n > 0 and not batch_keys & set(user):
        size = settings["per_device_train_batch_size"]
        settings["per_device_train_batch_size"] = max(n, math.ceil(size / n) * n)
    n = user.get("num_generations_eval") or n
    if isinstance(n, int) and n > 0 and "per_device_eval_batch_size" not in user:
        settings["per_device_eval_batch_size"] = max(n, math.ceil(8 / n) * n)


@dataclasses.dataclass
class Resolved:
    args: Any  # the TRL config object
    own: dict[str, Any]  # our options, defaults filled in
    overrides: dict[str, Any]  # what the user set (for metrics.json)
    gpu: bool


def own_options(kind: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """Our options with their defaults, checked like resolve checks them (needed before the
    trainer config: the validation split decides whether the run evaluates)."""
    if kind not in KINDS:
        raise TrainingOptionsError(
            f"unknown training kind {kind!r}; choose from {', '.join(KINDS)}"
        )
    user = {k: v for k, v in (options or {}).items() if k in OWN_OPTIONS[kind]}
    user = check_types(kind, user)
    return {name: user.get(name, default) for name, (default, _) in OWN_OPTIONS[kind].items()}


def resolve(
    kind: str,
    options: dict[str, Any] | None,
    output_dir: Path,
    *,
    progress: bool = True,
    gpu: bool | None = None,
    model_defaults: dict[str, Any] | None = None,
    evaluate: bool = False,
) -> Resolved:
    """Check the user's options and build the trainer config; raises before anything is written.

    ``model_defaults`` are what the kind derives from the model (a max_length its positions
    can hold, assistant-only loss when the template marks assistant turns): above the kind's
    defaults, below the device settings and the user. ``evaluate`` (there is a validation
    split) turns evaluation on by default."""
    if kind not in KINDS:
        raise TrainingOptionsError(
            f"unknown training kind {kind!r}; choose from {', '.join(KINDS)}"
        )
    user = dict(options or {})
    # The deprecated transformers names would lose to the new ones we set: move them over.
    for old, new in (
        ("gradient_checkpointing", "activation_checkpointing"),
        ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"),
    ):
        if old in user:
            user.setdefault(new, user.pop(old))
    check_keys(kind, user)
    user = check_types(kind, user)
    own = {name: user.pop(name, default) for name, (default, _) in OWN_OPTIONS[kind].items()}
    if gpu is None:
        gpu = gpu_available() and not user.get("use_cpu", False)
    settings = {
        **COMMON_DEFAULTS,
        **(EVAL_DEFAULTS if evaluate else {}),
        **KIND_DEFAULTS[kind],
        **(model_defaults or {}),
        **device_settings(kind, gpu),
        "disable_tqdm": not progress,
    }
    if kind == "rlhf":
        _grpo_batch(settings, user)
    settings.update(user)
    settings["output_dir"] = str(output_dir)
    cls = config_class(kind)
    try:
        args = cls(**settings)
    except (ValueError, TypeError) as e:
        raise TrainingOptionsError(f"{CONFIG_CLASSES[kind]} rejected the options: {e}") from None
    tracking.check(args.report_to)
    overrides = {**user, **{k: v for k, v in own.items() if k in (options or {})}}
    return Resolved(args, own, overrides, gpu)
