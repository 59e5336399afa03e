"""A validation split worth reporting, and the rows too long for the model.

The builder splits by tree at its `val_fraction` (5% by default), which on a young store
leaves a handful of rows: too few for a figure anyone should believe. When the build's
validation split has fewer than `val_min` rows, or `val_fraction` is given, train and
validation are pooled and split again, whole trees at a time (the rows of one tree share
their first prompt; a stable hash of it orders the trees), until validation holds
max(val_min, val_fraction of the rows), but never more than half of them.

Rows longer than max_length do not fail: the trainers truncate them (SFT, DPO, KTO) or
drop them (RM pairs; DPO/KTO rows whose prompt alone fills max_length; RL prompts, see
training.rlhf). They are counted here so the summary table says how many.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from training.data import TrainingData

_FIRST_COLUMN = {"sft": "messages", "rm": "prompt", "dpo": "prompt", "kto": "prompt"}


def tree_key(row: dict[str, Any], kind: str) -> str:
    turns = row[_FIRST_COLUMN.get(kind, "prompt")]
    first = turns[0] if turns else {}
    return f"{first.get('role')}\x00{first.get('content')}"


def _draw(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def split(data: TrainingData, val_fraction: float | None, val_min: int) -> dict[str, Any]:
    """Re-split ``data`` in place when its validation split is too small; returns what
    metrics.json records about the split."""
    from datasets import concatenate_datasets

    if val_fraction is not None and not 0 <= val_fraction < 1:
        from training.errors import TrainingOptionsError

        raise TrainingOptionsError(f"val_fraction must be in [0, 1), not {val_fraction}")
    built = len(data.validation)
    if val_fraction is None and built >= val_min:
        return {"source": "build", "rows": built}
    pool = concatenate_datasets([data.train, data.validation]) if built else data.train
    fraction = val_fraction if val_fraction is not None else build_fraction(data)
    target = min(max(val_min, math.ceil(fraction * len(pool))), len(pool) // 2)
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(pool.select_columns([_FIRST_COLUMN.get(data.kind, "prompt")])):
        groups.setdefault(tree_key(row, data.kind), []).append(i)
    chosen: list[int] = []
    for key in sorted(groups, key=_draw):
        if len(chosen) >= target or len(chosen) + len(groups[key]) > len(pool) // 2:
            break
        chosen.extend(groups[key])
    if val_fraction is None and len(chosen) <= built:  # no better than the build's split
        return {"source": "build", "rows": built}
    taken = set(chosen)
    data.train = pool.select([i for i in range(len(pool)) if i not in taken])
    data.validation = pool.select(sorted(chosen))
    return {
        "source": "re-split by tree",
        "rows": len(chosen),
        "build_rows": built,
        "fraction": fraction,
        "min": val_min,
    }


def build_fraction(data: TrainingData) -> float:
    options = (data.manifest or {}).get("options") or {}
    value = options.get("val_fraction")
    return float(value) if isinstance(value, (int, float)) else 0.05


def _length(tokenizer: Any, conversation: list[dict[str, str]], prompt: bool = False) -> int:
    return len(
        tokenizer.apply_chat_template(
            conversation, tokenize=True, return_dict=True, add_generation_prompt=prompt
        )["input_ids"]
    )


def _too_long_rows(kind: str, tokenizer: Any, rows: Any, limit: int) -> dict[str, int]:
    truncated = dropped = 0
    for row in rows:
        if kind == "sft":
            truncated += _length(tokenizer, row["messages"]) > limit
        elif kind == "rm":
            dropped += any(
                _length(tokenizer, row["prompt"] + row[side]) > limit
                for side in ("chosen", "rejected")
            )
        else:  # dpo, kto: the prompt alone filling max_length drops the row
            if _length(tokenizer, row["prompt"], prompt=True) >= limit:
                dropped += 1
                continue
            sides = ("chosen", "rejected") if kind == "dpo" else ("completion",)
            truncated += any(
                _length(tokenizer, row["prompt"] + row[side]) > limit for side in sides
            )
    return {"truncated": truncated, "dropped": dropped}


def too_long(kind: str, tokenizer: Any, data: TrainingData, max_length: int | None) -> Any:
    """Rows over max_length tokens per split, as the trainer will treat them (truncated
    or dropped); None when nothing limits the length."""
    if not max_length or kind == "rlhf":
        return None
    counts = {
        name: _too_long_rows(kind, tokenizer, split_rows, max_length)
        for name, split_rows in (("train", data.train), ("validation", data.validation))
    }
    return {"max_length": max_length, **counts}
