"""`train kto`: Kahneman-Tversky optimisation on single replies labelled desirable or not.

The builder's kto rows mark rejected replies undesirable and the better half of ranked
siblings desirable, so replies nobody ranked still teach something. Reference model as in
DPO: the starting folder unless `ref_model` names another.
"""

from __future__ import annotations

from typing import Any

from training.spec import RunSpec, reference_trainer

COLUMNS = ["prompt", "completion", "label"]


def model_defaults(spec: RunSpec) -> dict[str, Any]:
    return spec.length_defaults()


def check(spec: RunSpec) -> None:
    labels = spec.data.train["label"]
    desirable = sum(bool(x) for x in labels)
    # TRL warns when the two counts are unbalanced and suggests desirable_weight /
    # undesirable_weight; the counts in metrics.json say whether that applied.
    spec.notes.update(
        beta=spec.args.beta,
        reference=spec.ref_model or spec.model,
        desirable=desirable,
        undesirable=len(labels) - desirable,
    )


def build_trainer(spec: RunSpec) -> Any:
    from trl import KTOTrainer

    return reference_trainer(KTOTrainer, spec, COLUMNS)


def extra_metrics(trainer: Any, spec: RunSpec) -> dict[str, Any]:
    from training.report import validation_figure

    history = trainer.state.log_history
    margin, split = validation_figure(history, "rewards/margins")
    return {
        "final_reward_margin": margin,
        "final_reward_margin_split": split,
        "final_kl": validation_figure(history, "kl")[0],
    }
