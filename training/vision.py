"""Training image-text-to-text models: the processor instead of the tokenizer, the images.

A run whose model is a vision-language model (training.tiny_vlm.is_vision_model) trains
with its ``AutoProcessor`` as TRL's ``processing_class`` and keeps the dataset's
``images`` column (projections.datasets.images writes it: an ``Image`` sequence per row),
which is how TRL's SFT and DPO trainers recognise vision data. Length checks read the
processor's own tokenizer (text only: image tokens are not counted).
"""

from __future__ import annotations

from typing import Any

from training.errors import TrainingModelError

IMAGES = "images"


def is_processor(processing_class: Any) -> bool:
    return hasattr(processing_class, "image_processor")


def text_tokenizer(processing_class: Any) -> Any:
    return processing_class.tokenizer if is_processor(processing_class) else processing_class


def with_images(dataset: Any, columns: list[str]) -> list[str]:
    """The kind's columns, plus ``images`` when the rows carry them."""
    return [*columns, IMAGES] if IMAGES in dataset.column_names else list(columns)


def load_processor(model: str) -> Any:
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise TrainingModelError(f"cannot load the processor of {model!r}: {e}") from None
    if not getattr(processor, "chat_template", None):
        raise TrainingModelError(f"{model!r} has no chat template in its processor")
    if not getattr(processor.tokenizer, "chat_template", None):  # the length checks use it
        processor.tokenizer.chat_template = processor.chat_template
    return processor
