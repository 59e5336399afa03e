"""`train dpo`: direct preference optimisation on the ranked pairs (prompt/chosen/rejected).

Starts from an SFT model. The reference model is the starting model itself unless
`ref_model` names another folder: TRL reloads it from the policy's folder, which is why the
policy is given as a path, never as an in-memory model (see trl-stack.md, reference pitfall).
The `margin` column is left out: DPO's own beta sets how far to move from the reference.
"""

from __future__ import annotations

from typing import Any

from training.spec import RunSpec, reference_trainer

PAIR = ["prompt", "chosen", "rejected"]


def model_defaults(spec: RunSpec) -> dict[str, Any]:
    return spec.length_defaults()


def check(spec: RunSpec) -> None:
    spec.notes["beta"] = spec.args.beta
    spec.notes["reference"] = spec.ref_model or spec.model


def build_trainer(spec: RunSpec) -> Any:
    from trl import DPOTrainer

    return reference_trainer(DPOTrainer, spec, PAIR)


def extra_metrics(trainer: Any, spec: RunSpec) -> dict[str, Any]:
    from training.report import validation_figure

    history = trainer.state.log_history
    accuracy, split = validation_figure(history, "rewards/accuracies")
    return {
        "final_reward_accuracy": accuracy,  # chosen's implicit reward above rejected's
        "final_reward_accuracy_split": split,
        "final_reward_margin": validation_figure(history, "rewards/margins")[0],
    }
