"""A tiny vision-language model built on the spot: no hub, no download.

The image-text-to-text counterpart of training.tiny, for tests and the offline demo: a
Llava model (one-layer CLIP vision tower on 32x32 pictures in 8x8 patches, a projector,
the tiny Llama of training.tiny as language model) with random weights, and a
processor assembled locally: CLIP image preprocessing plus the byte-level tokenizer
trained on the spot with an ``<image>`` token. Its chat template takes OA-style
messages whose content is text or a list of ``{"type": "image"}`` / ``{"type": "text"}``
parts (the layout TRL's vision trainers use) and keeps the ``{% generation %}`` markers
around assistant content. ``transformers.AutoProcessor`` and
``AutoModelForImageTextToText`` load the folder it writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from training.tiny import DEFAULT_TEXTS, build_tokenizer

IMAGE_TOKEN = "<image>"
IMAGE_SIZE, PATCH_SIZE = 32, 8

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}"
    "{% set parts = [{'type': 'text', 'text': message['content']}] %}"
    "{% else %}{% set parts = message['content'] %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{% for p in parts %}{% if p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}"
    "{{ '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{% for p in parts %}{% if p['type'] == 'image' %}{{ '<image>' }}"
    "{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}"
    "{{ '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_processor(texts: Iterable[str], vocab_size: int = 400):
    from transformers import CLIPImageProcessor, LlavaProcessor

    tokenizer = build_tokenizer(texts, vocab_size=vocab_size)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", IMAGE_TOKEN]})
    tokenizer.chat_template = CHAT_TEMPLATE
    images = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    return LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,  # CLIP's class token, dropped by "default"
    )


def build_vlm(processor, *, hidden_size: int = 64, layers: int = 2, seed: int = 0):
    import torch
    from transformers import AutoModelForImageTextToText, CLIPVisionConfig, LlamaConfig, LlavaConfig

    tokenizer = processor.tokenizer
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    return AutoModelForImageTextToText.from_config(config)


def init_tiny_vlm(
    out: Path | str, texts: Iterable[str] | None = None, *, vocab_size: int = 400, seed: int = 0
) -> Path:
    """Write a tiny image-text-to-text model and its processor into ``out``."""
    out = Path(out)
    processor = build_processor(list(texts or []) + DEFAULT_TEXTS, vocab_size=vocab_size)
    model = build_vlm(processor, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(out)
    model.save_pretrained(out)
    return out


def is_vision_model(path: str | Path) -> bool:
    """Whether the model folder (or hub id, offline cache) is an image-text-to-text model;
    False where its config cannot be read (loading the model will say why)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError):
        return False
    return getattr(config, "vision_config", None) is not None
