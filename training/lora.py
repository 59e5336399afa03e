"""LoRA adapters through peft: `--lora r=16,alpha=32,dropout=0.05,target=all-linear`.

The trainer freezes the model and trains low-rank adapters (plus the RM's new score head);
the run folder then holds the adapter (adapter_config.json, adapter_model.safetensors)
beside the tokenizer. With `merge=true` the adapter is folded into a fresh copy of the base
weights and OUT holds full weights, the adapter kept in OUT/adapter. DPO, KTO and GRPO with
a KL term use the policy with its adapter switched off as the reference: no second model.

`bits=4` or `bits=8` loads the base quantised (QLoRA); bitsandbytes needs a CUDA GPU, so
this is refused on a CPU-only machine or without the package. Several target modules are
joined with `+` (`target=q_proj+v_proj`), since commas separate the keys.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from training.errors import TrainingOptionsError

KEYS = {
    "r": int,
    "alpha": float,
    "dropout": float,
    "target": str,
    "bits": int,
    "merge": bool,
}
DEFAULTS: dict[str, Any] = {
    "r": 16,
    "alpha": 32.0,
    "dropout": 0.05,
    "target": "all-linear",
    "bits": None,
    "merge": False,
}
ADAPTER_DIR = "adapter"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def _value(key: str, raw: str) -> Any:
    kind = KEYS[key]
    if kind is bool:
        if raw.lower() in ("true", "yes", "1", "on"):
            return True
        if raw.lower() in ("false", "no", "0", "off"):
            return False
        raise TrainingOptionsError(f"--lora {key}={raw}: expected true or false")
    try:
        return kind(raw)
    except ValueError:
        raise TrainingOptionsError(f"--lora {key}={raw}: expected {kind.__name__}") from None


def parse(text: str | None) -> dict[str, Any] | None:
    """`r=16,alpha=32,...` (every key optional; an empty string takes the defaults)."""
    if text is None:
        return None
    spec = dict(DEFAULTS)
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in KEYS:
            raise TrainingOptionsError(
                f"--lora expects KEY=VALUE pairs with KEY one of {', '.join(KEYS)}, not {item!r}"
            )
        spec[key] = _value(key, raw.strip())
    if spec["r"] < 1 or not 0 <= spec["dropout"] < 1 or spec["bits"] not in (None, 4, 8):
        raise TrainingOptionsError(
            f"--lora needs r >= 1, 0 <= dropout < 1 and bits 4 or 8, not {text!r}"
        )
    return spec


def check_installed() -> None:
    if importlib.util.find_spec("peft") is None:
        raise TrainingOptionsError(
            "--lora needs the peft package, which is not installed: "
            "pip install 'dataengine[training]'"
        )


def quantization(spec: dict[str, Any], gpu: bool) -> dict[str, Any]:
    """model_init_kwargs for a 4/8-bit base (nothing without `bits`)."""
    bits = spec["bits"]
    if bits is None:
        return {}
    if not gpu or importlib.util.find_spec("bitsandbytes") is None:
        raise TrainingOptionsError(
            f"--lora bits={bits} loads the model with bitsandbytes, which needs a CUDA GPU "
            "and the bitsandbytes package (pip install bitsandbytes)"
        )
    from transformers import BitsAndBytesConfig

    if bits == 4:
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype="bfloat16",
        )
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    return {"quantization_config": config}


def peft_config(spec: dict[str, Any], kind: str) -> Any:
    from peft import LoraConfig

    target = spec["target"]
    return LoraConfig(
        r=spec["r"],
        lora_alpha=spec["alpha"],
        lora_dropout=spec["dropout"],
        target_modules=target if target == "all-linear" else target.split("+"),
        task_type="SEQ_CLS" if kind == "rm" else "CAUSAL_LM",
    )


def merge(staging: Path, base: str, kind: str, tokenizer: Any, use_cache: bool) -> None:
    """Move the saved adapter to OUT/adapter and write base + adapter as full weights in
    OUT. The base is loaded afresh in its own dtype: merging into 4-bit weights would
    round the adapter away."""
    from peft import PeftModel

    adapter = staging / ADAPTER_DIR
    adapter.mkdir(exist_ok=True)
    for name in ADAPTER_FILES + ("README.md",):
        if (staging / name).is_file():
            shutil.move(str(staging / name), adapter / name)
    if kind == "rm":
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype="auto")
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.config.use_cache = use_cache
    merged.save_pretrained(str(staging))
