"""A tiny Llama with a byte-level BPE tokenizer trained on the spot: no hub, no download.

Used by the tests, the offline demo (`dataengine models init-tiny`) and the flywheel's CI
run. The chat template is ChatML with `{% generation %}` markers around assistant content,
which TRL needs for `assistant_only_loss`. LlamaConfig (not Qwen2) keeps the tokenizer's
save/load round trip exact in transformers 5.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

DEFAULT_TEXTS = [
    "How do I sort a list in Python?",
    "Use sorted(items) or items.sort().",
    "What is the capital of France?",
    "Paris is the capital of France.",
    "Explain photosynthesis briefly.",
    "Plants turn light, water and CO2 into sugar and oxygen.",
    "Write a haiku about rain.",
    "Soft rain on the roof, the garden drinks slowly, night smells of wet stone.",
    "Thanks, that helps!",
    "You're welcome. Anything else?",
]


def build_tokenizer(texts: Iterable[str], vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(texts), trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=512,
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_model(
    tokenizer,
    *,
    hidden_size: int = 64,
    layers: int = 2,
    seed: int = 0,
    max_positions: int = 512,
):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    return AutoModelForCausalLM.from_config(config)


def init_tiny(
    out: Path | str,
    texts: Iterable[str] | None = None,
    *,
    vocab_size: int = 400,
    hidden_size: int = 64,
    layers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a tiny causal LM and its tokenizer into ``out`` (a `from_pretrained` folder)."""
    out = Path(out)
    corpus = list(texts) if texts is not None else []
    tokenizer = build_tokenizer(corpus + DEFAULT_TEXTS, vocab_size=vocab_size)
    model = build_model(tokenizer, hidden_size=hidden_size, layers=layers, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    return out
