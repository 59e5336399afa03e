"""Every dataset kind the builder writes loads, unchanged, into its TRL trainer and trains.

A store is driven to ready_for_export by the simulated crowd (reviews, spam, rankings,
scoring), `dataengine datasets build` writes the datasets, and each kind is loaded the way
a trainer's user would (`load_from_disk(<kind>/hf)`, or `load_dataset` on the parquet or
JSONL files) and handed as it is to SFTTrainer, RewardTrainer, DPOTrainer, KTOTrainer and
GRPOTrainer, which train two steps of a tiny Llama built offline (training.tiny). A trainer
that rejects a column, a type or a layout fails here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a wrong path fails at once, no DNS retries
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from api.bootstrap import open_app  # noqa: E402
from api.cli import main  # noqa: E402
from domain.model.config import TreeConfig  # noqa: E402
from domain.service.simulator import run_simulation  # noqa: E402
from projections.log import SQLiteLog  # noqa: E402
from projections.runner import ProjectionRunner  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

STEPS = 2
CPU = {
    "report_to": "none",
    "use_cpu": True,
    "bf16": False,
    "activation_checkpointing": False,
    "save_strategy": "no",
    "per_device_train_batch_size": 2,
    "max_steps": STEPS,
    "logging_steps": 1,
    "dataloader_num_workers": 0,
    "seed": 0,
    "disable_tqdm": True,
    "learning_rate": 1e-3,
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Datasets built by the CLI from a simulated store (every tree on the train side)."""
    folder = tmp_path_factory.mktemp("store")
    app = open_app(folder, TreeConfig(goal_tree_size=4, min_goal_tree_size=1))
    with ProjectionRunner(SQLiteLog(folder / "events.sqlite"), folder / "sim.sqlite") as runner:
        run_simulation(app, runner, trees=6, users=12, seed=11)
    out = folder / "datasets"
    assert (
        main(["datasets", "build", "--data", str(folder), "--out", str(out), "--val-fraction", "0"])
        == 0
    )
    return out


@pytest.fixture(scope="module")
def tiny(built: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    """A tiny Llama whose tokenizer was trained on the dataset's own texts."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from training.tiny import init_tiny

    texts = [
        m["content"]
        for row in load_from_disk(str(built / "sft" / "hf"))["train"]
        for m in row["messages"]
    ]
    path = init_tiny(tmp_path_factory.mktemp("tiny"), texts)
    return str(path), AutoTokenizer.from_pretrained(path)


def trained(trainer: Any) -> Any:
    result = trainer.train()
    assert trainer.state.global_step == STEPS
    assert math.isfinite(result.training_loss)
    return result


def test_sft_messages_train_with_assistant_only_loss(
    built: Path, tiny: tuple[str, Any], tmp_path: Path
) -> None:
    from datasets import load_from_disk
    from trl import SFTConfig, SFTTrainer

    data = load_from_disk(str(built / "sft" / "hf"))
    assert data["train"].num_rows >= 4 and data["train"].column_names == ["messages"]
    assert data["validation"].num_rows == 0  # an empty split loads too, with its columns
    assert data["validation"].column_names == ["messages"]
    trainer = SFTTrainer(
        model=tiny[0],
        processing_class=tiny[1],
        train_dataset=data["train"],
        args=SFTConfig(output_dir=str(tmp_path), max_length=256, assistant_only_loss=True, **CPU),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    labelled = (batch["labels"] != -100).sum().item()
    assert 0 < labelled < batch["attention_mask"].sum().item()  # the prompts carry no loss
    trained(trainer)


def test_reward_pairs_from_parquet_keep_their_margin(
    built: Path, tiny: tuple[str, Any], tmp_path: Path
) -> None:
    from datasets import load_dataset
    from trl import RewardConfig, RewardTrainer

    data = load_dataset(
        "parquet",
        data_files={"train": str(built / "rm" / "train.parquet")},
        cache_dir=str(tmp_path / "cache"),
    )["train"]
    assert set(data.column_names) == {"prompt", "chosen", "rejected", "margin"}
    trainer = RewardTrainer(
        model=tiny[0],
        processing_class=tiny[1],
        train_dataset=data,
        args=RewardConfig(output_dir=str(tmp_path), max_length=256, **CPU),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    margins = batch["margin"].tolist()  # the rank gap reaches the loss (margin-modulated)
    assert len(margins) == 2 and set(margins) <= set(data["margin"])
    assert min(data["margin"]) >= 1.0
    trained(trainer)


def test_dpo_pairs_from_the_hf_folder(built: Path, tiny: tuple[str, Any], tmp_path: Path) -> None:
    from datasets import load_from_disk
    from trl import DPOConfig, DPOTrainer

    data = load_from_disk(str(built / "dpo" / "hf"))["train"]
    trainer = DPOTrainer(
        model=tiny[0],
        processing_class=tiny[1],
        train_dataset=data,
        args=DPOConfig(output_dir=str(tmp_path), max_length=256, beta=0.1, **CPU),
    )
    trained(trainer)
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])


def test_kto_completions_from_jsonl(built: Path, tiny: tuple[str, Any], tmp_path: Path) -> None:
    from datasets import load_dataset
    from trl import KTOConfig, KTOTrainer

    data = load_dataset(
        "json", data_files=str(built / "kto" / "train.jsonl"), cache_dir=str(tmp_path / "cache")
    )["train"]
    assert set(data["label"]) == {True, False}  # rejected and worse-ranked replies: undesirable
    trainer = KTOTrainer(
        model=tiny[0],
        processing_class=tiny[1],
        train_dataset=data,
        args=KTOConfig(output_dir=str(tmp_path), max_length=256, **CPU),
    )
    trained(trainer)


def test_grpo_prompts_from_the_hf_folder(
    built: Path, tiny: tuple[str, Any], tmp_path: Path
) -> None:
    from datasets import load_from_disk
    from trl import GRPOConfig, GRPOTrainer

    data = load_from_disk(str(built / "rl" / "hf"))["train"]
    assert all(row["prompt"][-1]["role"] == "user" for row in data)
    seen: list[Any] = []

    def brevity(prompts: list, completions: list, **_: Any) -> list[float]:
        seen.extend(prompts)
        return [-len(c[0]["content"]) / 100 for c in completions]  # conversational completions

    trainer = GRPOTrainer(
        model=tiny[0],
        processing_class=tiny[1],
        train_dataset=data,
        reward_funcs=brevity,
        args=GRPOConfig(
            output_dir=str(tmp_path), num_generations=2, max_completion_length=8, **CPU
        ),
    )
    trained(trainer)
    assert seen and all(p in list(data["prompt"]) for p in seen)
