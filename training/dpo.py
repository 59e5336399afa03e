"""`train dpo`: direct preference optimisation on the ranked pairs (prompt/chosen/rejected).

Starts from an SFT model. The reference model is the starting model itself unless
`ref_model` names another folder: TRL reloads it from the policy's folder, which is why the
policy is given as a path, never as an in-memory model (see trl-stack.md, reference pitfall).
The `margin` column is left out: DPO's own beta sets how far to move from the reference.
"""

from __future__ import annotations

from typing import Any

from training.runs import RunSpec, reference_trainer

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
    from training.runs import last

    history = trainer.state.log_history
    return {
        "final_reward_accuracy": last(history, "rewards/accuracies"),
        "final_reward_margin": last(history, "rewards/margins"),
    }
