"""`train rm`: a reward model from ranked sibling replies (prompt/chosen/rejected pairs).

The model is the base causal LM with a one-logit score head (TRL builds it from the folder
with num_labels=1). The `margin` column, the rank gap, asks for a larger score gap between
replies ranked further apart (Llama 2's margin loss); `margin_scale` weights it, 0 drops it.

The run's headline figure is our own pairwise accuracy: the fraction of held-out pairs where
score(chosen) > score(rejected), computed after training on the validation split (the train
split when validation is empty, which metrics.json says), not the trainer's batch figure.
"""

from __future__ import annotations

from typing import Any

from training.spec import RunSpec

PAIR = ["prompt", "chosen", "rejected"]


def model_defaults(spec: RunSpec) -> dict[str, Any]:
    return spec.length_defaults()


def check(spec: RunSpec) -> None:
    scale = float(spec.own["margin_scale"])
    use = scale != 0 and "margin" in spec.data.train.column_names
    spec.notes["margin_scale"] = scale if use else 0.0


def _rows(spec: RunSpec, dataset: Any) -> Any:
    scale = spec.notes["margin_scale"]
    if not scale:
        return dataset.select_columns(PAIR)
    dataset = dataset.select_columns(PAIR + ["margin"])
    if scale != 1.0:
        dataset = dataset.map(lambda row: {"margin": row["margin"] * scale})
    return dataset


def build_trainer(spec: RunSpec) -> Any:
    from trl import RewardTrainer

    evaluate = spec.eval_dataset(spec.data.validation.column_names)
    return RewardTrainer(
        model=spec.model,
        args=spec.args,
        train_dataset=_rows(spec, spec.data.train),
        eval_dataset=_rows(spec, evaluate) if evaluate is not None else None,
        processing_class=spec.tokenizer,
        peft_config=spec.peft_config,
    )


def score(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    *,
    batch_size: int = 8,
    max_length: int | None = None,
) -> list[float | None]:
    """The reward model's score of each conversation (chat-templated as in training);
    None for one longer than max_length, which training would have dropped too."""
    import torch

    ids = [
        tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]
        for c in conversations
    ]
    scores: list[float | None] = [None] * len(ids)
    keep = [i for i, x in enumerate(ids) if max_length is None or len(x) <= max_length]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for start in range(0, len(keep), batch_size):
                chunk = keep[start : start + batch_size]
                batch = tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
                logits = model(
                    input_ids=batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                ).logits
                for i, value in zip(chunk, logits[:, 0].float().tolist()):
                    scores[i] = value
    finally:
        model.train(was_training)
    return scores


def pairwise_accuracy(
    model: Any, tokenizer: Any, pairs: Any, *, batch_size: int = 8, max_length: int | None = None
) -> dict[str, Any]:
    chosen = score(
        model,
        tokenizer,
        [r["prompt"] + r["chosen"] for r in pairs],
        batch_size=batch_size,
        max_length=max_length,
    )
    rejected = score(
        model,
        tokenizer,
        [r["prompt"] + r["rejected"] for r in pairs],
        batch_size=batch_size,
        max_length=max_length,
    )
    scored = [(c, r) for c, r in zip(chosen, rejected) if c is not None and r is not None]
    wins = sum(c > r for c, r in scored)
    return {
        "value": wins / len(scored) if scored else None,
        "pairs": len(scored),
        "skipped_too_long": len(chosen) - len(scored),
        "mean_gap": sum(c - r for c, r in scored) / len(scored) if scored else None,
    }


def _scoring_model(trainer: Any) -> Any:
    """Sharded weights (ZeRO-3, FSDP) cannot run forward on one process: reload the saved RM."""
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(trainer.args.output_dir).to(
            trainer.accelerator.device
        )
    return trainer.accelerator.unwrap_model(trainer.model)


def extra_metrics(trainer: Any, spec: RunSpec) -> dict[str, Any]:
    if not trainer.is_world_process_zero():
        return {}
    validation = spec.data.validation
    split, pairs = ("validation", validation) if len(validation) else ("train", spec.data.train)
    result = pairwise_accuracy(
        _scoring_model(trainer),
        spec.tokenizer,
        pairs,
        batch_size=spec.args.per_device_eval_batch_size,
        max_length=spec.args.max_length,
    )
    result["split"] = split
    if split == "train":
        result["note"] = (
            "the validation split is empty: accuracy on the training pairs (optimistic)"
        )
    return {"pairwise_accuracy": result}
