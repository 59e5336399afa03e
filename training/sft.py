"""`train sft`: supervised fine-tuning on the best conversation threads (`messages` rows).

The loss covers only the assistant turns when the chat template can mark them (it has
`{% generation %}` markers, or TRL knows how to patch it): the prompter's words are context,
not something the model should learn to say.
"""

from __future__ import annotations

from typing import Any

from training.spec import RunSpec
from training.vision import is_processor, with_images

COLUMNS = ["messages"]


def assistant_mask_supported(tokenizer: Any) -> bool:
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return True
    try:
        return get_training_chat_template(tokenizer) is not None
    except (ValueError, KeyError, TypeError):  # a template TRL cannot patch
        return False


def model_defaults(spec: RunSpec) -> dict[str, Any]:
    return {
        **spec.length_defaults(),
        # TRL masks assistant turns of text chats only, not of vision-language rows
        "assistant_only_loss": not is_processor(spec.tokenizer)
        and assistant_mask_supported(spec.tokenizer),
    }


def check(spec: RunSpec) -> None:
    spec.notes["assistant_only_loss"] = bool(spec.args.assistant_only_loss)
    spec.notes["packing"] = bool(spec.args.packing)


def build_trainer(spec: RunSpec) -> Any:
    from trl import SFTTrainer

    return SFTTrainer(
        model=spec.model,
        args=spec.args,
        train_dataset=spec.data.train.select_columns(with_images(spec.data.train, COLUMNS)),
        eval_dataset=spec.eval_dataset(with_images(spec.data.train, COLUMNS)),
        processing_class=spec.tokenizer,
        peft_config=spec.peft_config,
    )


def extra_metrics(trainer: Any, spec: RunSpec) -> dict[str, Any]:
    return {}
