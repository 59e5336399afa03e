"""`train rlhf`: online RL with GRPO, our reward model as the reward function.

TRL 1.16 has no PPOTrainer; GRPO samples `num_generations` replies per prompt, scores each
with the reward model and pushes the policy towards the better ones of each group. The KL
penalty is off by default (beta=0, no reference model in memory); with `beta > 0` TRL
reloads the reference from the policy's folder, or from `ref_model` when given.

GRPO neither truncates prompts nor checks that prompt + completion fit the reward model's
positions, so prompts longer than `max_prompt_length` tokens (capped to what both models
can hold next to a full completion) are left out, and metrics.json counts them.
"""

from __future__ import annotations

from typing import Any

from training.errors import TrainingDataError, TrainingModelError, TrainingOptionsError
from training.spec import RunSpec, last, load_causal_lm, load_model_config, max_positions


def model_defaults(spec: RunSpec) -> dict[str, Any]:
    return {}


def _reward_config(path: str) -> Any:
    config = load_model_config(path, "reward model")
    architectures = getattr(config, "architectures", None) or []
    if (
        not any(a.endswith("ForSequenceClassification") for a in architectures)
        or getattr(config, "num_labels", 1) != 1
    ):
        raise TrainingModelError(
            f"{path!r} is not a reward model (architectures {architectures}, "
            f"num_labels {getattr(config, 'num_labels', None)}); "
            "train one with `dataengine train rm`"
        )
    return config


def prompt_limit(spec: RunSpec, reward_config: Any) -> int:
    completion = spec.args.max_completion_length
    limit = int(spec.own["max_prompt_length"])
    for config in (spec.model_config, reward_config):
        positions = max_positions(config)
        if positions:
            limit = min(limit, positions - completion)
    if limit < 1:
        raise TrainingOptionsError(
            f"max_completion_length={completion} leaves no room for a prompt "
            "in the models' positions"
        )
    return limit


def keep_short(spec: RunSpec, dataset: Any, limit: int) -> tuple[Any, int]:
    tokenizer = spec.tokenizer
    lengths = [
        len(
            tokenizer.apply_chat_template(
                p, add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
        )
        for p in dataset["prompt"]
    ]
    keep = [i for i, n in enumerate(lengths) if n <= limit]
    return dataset.select(keep).select_columns(["prompt"]), len(lengths) - len(keep)


def check(spec: RunSpec) -> None:
    if not spec.reward_model:
        raise TrainingOptionsError("`train rlhf` needs a reward model (--reward-model DIR)")
    reward_config = _reward_config(spec.reward_model)
    beta = spec.args.beta
    if spec.ref_model and not beta:
        raise TrainingOptionsError(
            "--ref-model is only used for the KL penalty: give --beta > 0 too"
        )
    limit = prompt_limit(spec, reward_config)
    train, dropped = keep_short(spec, spec.data.train, limit)
    if len(train) == 0:
        raise TrainingDataError(
            f"every prompt in {spec.data.folder} is longer than {limit} tokens; "
            "raise max_prompt_length or lower max_completion_length"
        )
    spec.data.train = train
    if spec.args.eval_strategy != "no":
        spec.data.validation, _ = keep_short(spec, spec.data.validation, limit)
    spec.notes.update(
        beta=beta,
        reference=(spec.ref_model or spec.model) if beta else None,
        num_generations=spec.args.num_generations,
        max_prompt_length=limit,
        prompts_dropped_too_long=dropped,
    )


def build_trainer(spec: RunSpec) -> Any:
    from trl import GRPOTrainer

    policy: Any = spec.model
    if spec.ref_model:
        # GRPOTrainer takes no ref_model argument: it builds the reference from the policy's
        # config name, so point that name at the reference folder while it does so.
        policy = load_causal_lm(spec.model, spec.args)
        policy.config._name_or_path = spec.ref_model
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=spec.reward_model,
        args=spec.args,
        train_dataset=spec.data.train,
        eval_dataset=spec.eval_dataset(["prompt"]),
        processing_class=spec.tokenizer,
        peft_config=spec.peft_config,
    )
    if spec.ref_model:
        policy.config._name_or_path = spec.model
    return trainer


def plot_notes(spec: RunSpec) -> dict[str, str]:
    if spec.args.beta:
        return {}
    return {"KL to reference": "beta = 0: no KL penalty, no reference model"}


def extra_metrics(trainer: Any, spec: RunSpec) -> dict[str, Any]:
    from training.report import validation_figure

    history = trainer.state.log_history
    rewards = [e["reward"] for e in history if isinstance(e.get("reward"), (int, float))]
    final, split = validation_figure(history, "reward")
    return {
        "initial_reward": rewards[0] if rewards else None,  # the first training batch
        "final_reward": final,  # on the validation prompts when there are any
        "final_reward_split": split,
        "final_kl": last(history, "kl"),
    }
