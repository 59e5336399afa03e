"""Training runs (`dataengine train`): every kind trains a few steps on CPU with a tiny model
and writes a complete run folder; bad input fails before anything is written.

One tiny Llama (training.tiny) and one builder-shaped dataset folder per session; the SFT
and RM runs are shared, since DPO, KTO and RLHF start from them.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a wrong model path fails at once, no DNS retries
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import msgspec
import pytest

from api.cli import main
from training.errors import TrainingDataError, TrainingModelError, TrainingOptionsError

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

FAST = {"learning_rate": 1e-3, "per_device_train_batch_size": 4}
POSITION = 17
DIGEST = "ab" * 32

QUESTIONS = [
    "How do I sort a list in Python?",
    "What is the capital of France?",
    "Explain photosynthesis briefly.",
    "Write a haiku about rain.",
    "Tell me a joke.",
    "What is two plus two?",
    "Name a primary colour.",
    "How do plants drink water?",
    "What is the largest ocean?",
    "Why is the sky blue?",
    "How far is the moon?",
    "Who wrote Hamlet?",
    "What do bees make?",
    "How many legs has a spider?",
]
GOOD = "That is a good question. Here is a short and helpful answer."


def u(text: str) -> dict:
    return {"role": "user", "content": text}


def a(text: str) -> dict:
    return {"role": "assistant", "content": text}


def gibberish(rng: random.Random) -> str:
    return " ".join("".join(rng.choice("qxzjkvw") for _ in range(4)) for _ in range(5))


def pair_rows(questions: list[str], rng: random.Random, flip: bool = False) -> list[dict]:
    rows = []
    for q in questions:
        good, bad = [a(GOOD)], [a(gibberish(rng))]
        chosen, rejected = (bad, good) if flip else (good, bad)
        rows.append({"prompt": [u(q)], "chosen": chosen, "rejected": rejected, "margin": 1.0})
    return rows


def write_build(root: Path, flip: bool = False) -> Path:
    """A folder laid out as `datasets build` writes it, with its writer and a manifest."""
    from projections.datasets.writer import write_kind

    rng = random.Random(0)
    train_q, val_q = QUESTIONS[:10], QUESTIONS[10:]
    kinds = {
        "sft": {
            s: [{"messages": [u(q), a(GOOD)]} for q in qs]
            for s, qs in (("train", train_q), ("validation", val_q))
        },
        "rm": {"train": pair_rows(train_q, rng, flip), "validation": pair_rows(val_q, rng, flip)},
        "kto": {
            "train": [
                {
                    "prompt": [u(q)],
                    "completion": [a(GOOD if i % 2 else gibberish(rng))],
                    "label": bool(i % 2),
                }
                for i, q in enumerate(train_q)
            ]
        },
        "rl": {"train": [{"prompt": [u(q)]} for q in train_q]},
    }
    kinds["dpo"] = kinds["rm"]
    encoder = msgspec.json.Encoder()
    files = {}
    for kind, splits in kinds.items():
        lines = {s: encoder.encode_lines(rows) for s, rows in splits.items()}
        for path, digest in write_kind(root / kind, kind, lines).items():
            files[path.relative_to(root).as_posix()] = digest
    manifest = {
        "format": "dataengine-datasets/1",
        "log_position": POSITION,
        "audit": {"scheme": "sha256-chain/1", "position": POSITION, "digest": DIGEST},
        "rows": {k: {s: len(r) for s, r in v.items()} for k, v in kinds.items()},
        "files": dict(sorted(files.items())),
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core box torch's
    spinning OpenMP workers made a 30-step run 5-10x slower (1.6 s vs 12 s measured).
    Session scope, so it is in force before the session-scoped runs below."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.tiny import init_tiny

    return init_tiny(tmp_path_factory.mktemp("tiny") / "model", texts=QUESTIONS + [GOOD])


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_build(tmp_path_factory.mktemp("ds"))


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def sft_run(tiny: Path, build: Path, runs: Path) -> Path:
    """Through the CLI, so its argument handling is covered too."""
    out = runs / "sft"
    code = main(
        [
            "train",
            "sft",
            "--data",
            str(build),
            "--model",
            str(tiny),
            "--out",
            str(out),
            "--max-steps",
            "4",
            "--set",
            "learning_rate=1e-3",
            "--set",
            "per_device_train_batch_size=4",
            "--quiet",
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="session")
def rm_run(tiny: Path, build: Path, runs: Path) -> Path:
    from training.runs import train

    return train(
        "rm",
        data=build,
        model=str(tiny),
        out=runs / "rm",
        options={**FAST, "max_steps": 30},
        progress=False,
    ).out


def metrics_of(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def assert_run_folder(out: Path, kind: str, build: Path) -> dict:
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "metrics.json",
        "dataset_manifest.json",
        "curves.png",
    } <= names
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "dataset_manifest.json").read_bytes() == (build / "manifest.json").read_bytes()
    assert not list(out.parent.glob(f".{out.name}.*")), "a staging folder was left behind"
    m = metrics_of(out)
    assert m["kind"] == kind
    assert m["dataset"]["log_position"] == POSITION and m["dataset"]["digest"] == DIGEST
    assert m["device"]["type"] == "cpu" and m["device"]["bf16"] is False
    assert m["global_step"] > 0 and m["train_samples"] > 0
    assert isinstance(m["train_loss"], float) and isinstance(m["train_runtime"], float)
    assert any("loss" in e for e in m["log_history"])
    return m


# ---------------------------------------------------------------------- every kind trains
def test_sft_run_is_complete_and_the_model_generates(sft_run: Path, build: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = assert_run_folder(sft_run, "sft", build)
    assert m["global_step"] == 4 and m["options"]["learning_rate"] == 1e-3  # "1e-3" is a number
    assert m["assistant_only_loss"] is True  # the tiny template has generation markers
    assert m["trainer_config"]["use_cpu"] is True
    tokenizer = AutoTokenizer.from_pretrained(sft_run)
    model = AutoModelForCausalLM.from_pretrained(sft_run)
    inputs = tokenizer.apply_chat_template(
        [u(QUESTIONS[0])], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def test_rm_accuracy_is_ours_on_the_validation_pairs(rm_run: Path, build: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.data import load
    from training.reward import pairwise_accuracy
    from training.validation import split

    m = assert_run_folder(rm_run, "rm", build)
    accuracy = m["pairwise_accuracy"]
    # The build's 4 validation pairs are under val_min (16): re-split by tree, at most half.
    data = load(build, "rm")
    assert split(data, None, 16) == m["validation"] and m["validation"]["build_rows"] == 4
    assert accuracy["split"] == "validation" and accuracy["pairs"] == len(QUESTIONS) // 2
    assert 0.0 <= accuracy["value"] <= 1.0
    assert m["final_loss_split"] == "validation" and m["final_loss"] == m["log_history"][-2].get(
        "eval_loss", m["final_loss"]
    )
    # The saved model gives the same figure: it is the scored model, not a trainer statistic.
    model = AutoModelForSequenceClassification.from_pretrained(rm_run)
    again = pairwise_accuracy(model, AutoTokenizer.from_pretrained(rm_run), data.validation)
    assert again["value"] == accuracy["value"] and again["pairs"] == accuracy["pairs"]


def test_rm_learns_a_separable_preference_either_way(
    rm_run: Path, tiny: Path, tmp_path: Path
) -> None:
    """Good reply over gibberish, then the mirror image: high accuracy both ways means the
    model learned the labels, not a lucky initial bias."""
    from training.runs import train

    assert metrics_of(rm_run)["pairwise_accuracy"]["value"] > 0.8
    flipped = write_build(tmp_path / "flipped", flip=True)
    result = train(
        "rm",
        data=flipped,
        model=str(tiny),
        out=tmp_path / "rm_flipped",
        options={**FAST, "max_steps": 30, "margin_scale": 0.5},
        progress=False,
    )
    assert result.metrics["margin_scale"] == 0.5
    assert result.metrics["pairwise_accuracy"]["value"] > 0.8
    assert result.metrics["pairwise_accuracy"]["mean_gap"] > 0


@pytest.mark.parametrize("kind", ["dpo", "kto"])
def test_preference_kinds_start_from_the_sft_run(
    kind: str, sft_run: Path, build: Path, runs: Path
) -> None:
    from training.runs import train

    result = train(
        kind,
        data=build,
        model=str(sft_run),
        out=runs / kind,
        options={**FAST, "max_steps": 3},
        progress=False,
    )
    m = assert_run_folder(result.out, kind, build)
    assert m["beta"] == 0.1 and m["reference"] == str(sft_run)
    assert m["global_step"] == 3


def grpo(sft_run: Path, rm_run: Path, build: Path, out: Path, **kw) -> dict:
    from training.runs import train

    options = {
        **FAST,
        "max_steps": 3,
        "num_generations": 4,
        "max_completion_length": 8,
        **kw.pop("options", {}),
    }
    return train(
        "rlhf",
        data=build,
        model=str(sft_run),
        out=out,
        reward_model=str(rm_run),
        options=options,
        progress=False,
        **kw,
    ).metrics


def test_rlhf_scores_completions_with_the_reward_model(
    sft_run: Path, rm_run: Path, build: Path, runs: Path
) -> None:
    m = grpo(sft_run, rm_run, build, runs / "rlhf")
    assert_run_folder(runs / "rlhf", "rlhf", build)
    assert m["beta"] == 0.0 and m["final_kl"] is None and m["reference"] is None
    assert isinstance(m["final_reward"], float) and isinstance(m["initial_reward"], float)
    assert any("rewards/rm/mean" in e for e in m["log_history"])  # our RM is the reward function


def test_rlhf_kl_uses_the_given_reference_model(
    sft_run: Path, rm_run: Path, tiny: Path, build: Path, tmp_path: Path
) -> None:
    """At the first step the policy still equals its start, so the KL is 0 against its own
    folder and positive against another model: the reference really is the one named."""
    own = grpo(sft_run, rm_run, build, tmp_path / "own", options={"beta": 0.1, "max_steps": 1})
    other = grpo(
        sft_run,
        rm_run,
        build,
        tmp_path / "other",
        ref_model=str(tiny),
        options={"beta": 0.1, "max_steps": 1},
    )
    assert own["final_kl"] == pytest.approx(0.0, abs=1e-6)
    assert other["final_kl"] > 1e-4 and other["reference"] == str(tiny)
    with pytest.raises(TrainingOptionsError, match="--beta"):
        grpo(sft_run, rm_run, build, tmp_path / "no_beta", ref_model=str(tiny))


# ---------------------------------------------------------------------- data locations
def test_a_kind_folder_and_parquet_only_folders_load(build: Path, tmp_path: Path) -> None:
    import shutil

    from training.data import load

    whole, kind_folder = load(build, "rm"), load(build / "rm", "rm")
    assert kind_folder.manifest_path == build / "manifest.json"
    assert whole.train.to_list() == kind_folder.train.to_list()
    bare = tmp_path / "bare_rm"
    shutil.copytree(build / "rm", bare, ignore=shutil.ignore_patterns("hf"))
    parquet = load(bare, "rm")
    assert parquet.manifest is None and parquet.train.to_list() == whole.train.to_list()
    assert len(parquet.validation) == len(whole.validation)
    parquet.write_manifest(tmp_path)  # no build manifest: a stand-in pins the files read
    from projections.datasets.writer import sha256

    stand_in = json.loads((tmp_path / "dataset_manifest.json").read_text())
    assert stand_in["log_position"] is None
    assert stand_in["files"]["train.parquet"] == sha256(bare / "train.parquet")
    rl = load(build, "rlhf")
    assert len(rl.validation) == 0 and rl.train.column_names == ["prompt"]  # empty HF split


# ---------------------------------------------------------------------- errors write nothing
def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))


@pytest.mark.parametrize(
    "options, words",
    [
        ({"learning_rat": 1e-3}, ["learning_rat", "learning_rate"]),
        ({"output_dir": "/tmp/x"}, ["output_dir"]),
        ({"max_prompt_length": 10}, ["max_prompt_length"]),  # an rlhf option is unknown to sft
        ({"learning_rate": "fast"}, ["learning_rate", "float", "fast"]),  # TRL would fail mid-run
        ({"max_steps": 2.5}, ["max_steps", "int"]),
    ],
)
def test_bad_options_fail_before_writing(
    options: dict, words: list[str], tiny: Path, build: Path, tmp_path: Path
) -> None:
    from training.runs import train

    out = tmp_path / "run"
    with pytest.raises(TrainingOptionsError) as err:
        train("sft", data=build, model=str(tiny), out=out, options=options, progress=False)
    assert all(w in err.value.message for w in words)
    assert err.value.error_code == 422
    assert_nothing_written(out)


def test_bad_data_or_model_fail_before_writing(tiny: Path, build: Path, tmp_path: Path) -> None:
    from training.runs import train

    out = tmp_path / "run"
    only_sft = tmp_path / "only_sft"
    only_sft.mkdir()
    (only_sft / "manifest.json").write_text("{}")
    (only_sft / "sft").symlink_to(build / "sft")
    empty = tmp_path / "empty"
    from projections.datasets.writer import write_kind

    written = write_kind(empty / "rl", "rl", {"train": b"", "validation": b""})
    files = {p.relative_to(empty).as_posix(): d for p, d in written.items()}
    (empty / "manifest.json").write_text(
        json.dumps({"format": "dataengine-datasets/1", "files": files})
    )
    cases = [
        (TrainingDataError, "does not exist", {"data": tmp_path / "nope"}),
        (TrainingDataError, "holds no rl", {"data": only_sft, "kind": "rlhf"}),
        (TrainingDataError, "empty", {"data": empty, "kind": "rlhf"}),
        (TrainingDataError, "lacks the column", {"data": build / "sft", "kind": "rm"}),
        (TrainingModelError, "model folder not found", {"model": str(tmp_path / "no-model")}),
        (TrainingModelError, "cannot load", {"model": str(only_sft)}),  # a folder, no model
        (
            TrainingModelError,
            "reward model folder not found",
            {"kind": "rlhf", "reward_model": str(tmp_path / "no-rm")},
        ),
        (TrainingOptionsError, "reward model", {"kind": "rlhf", "reward_model": None}),
        (TrainingModelError, "not a reward model", {"kind": "rlhf", "reward_model": str(tiny)}),
    ]
    for error, text, kw in cases:
        args = {"kind": "sft", "data": build, "model": str(tiny), "out": out, **kw}
        with pytest.raises(error, match=text):
            train(args.pop("kind"), **args, progress=False)
        assert_nothing_written(out)


def test_a_crash_leaves_no_run_and_a_rerun_replaces_only_a_run(
    tiny: Path, build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.sft
    from training.runs import train

    out = tmp_path / "run"
    kw = {
        "data": build,
        "model": str(tiny),
        "out": out,
        "options": {**FAST, "max_steps": 1},
        "progress": False,
    }
    nested = tmp_path / "new" / "folders" / "run"
    no_checkpoints = {**FAST, "max_steps": 1, "save_strategy": "no"}
    with monkeypatch.context() as patch:
        patch.setattr(training.sft, "extra_metrics", lambda *a: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            train("sft", **{**kw, "out": nested, "options": no_checkpoints})
        assert not (tmp_path / "new").exists()
        # With a checkpoint saved, a crash keeps the partial folder for --resume...
        with pytest.raises(ZeroDivisionError):
            train("sft", **{**kw, "out": nested})
    partial = nested.parent / ".run.partial"
    assert (partial / "checkpoint-1" / "trainer_state.json").is_file()
    with pytest.raises(TrainingOptionsError, match="--resume"):  # ...never silently discarded
        train("sft", **{**kw, "out": nested})
    resumed = train("sft", **{**kw, "out": nested, "resume": True}).metrics
    assert resumed["resumed_from"] == "checkpoint-1" and resumed["global_step"] == 1
    assert not partial.exists() and not list(nested.glob("checkpoint-*"))
    with pytest.raises(TrainingOptionsError, match="nothing to resume"):
        train("sft", **{**kw, "out": nested, "resume": True})
    first = train("sft", **kw).metrics["finished_at"]
    (out / "stale.txt").write_text("from the first run")
    train("sft", **kw)
    assert not (out / "stale.txt").exists() and metrics_of(out)["finished_at"] >= first
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(TrainingOptionsError, match="not empty"):
        train("sft", **{**kw, "out": foreign})
    assert (foreign / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------- options
def test_set_values_are_yaml_and_a_config_file_is_overridden(tmp_path: Path) -> None:
    from api.cli.train import gather_options, register  # noqa: F401
    from training.config import parse_set, read_config_file

    parsed = parse_set(
        [
            "learning_rate=1e-5",
            "packing=true",
            "max_length=",
            "lr_scheduler_type=cosine",
            "max_steps=3",
        ]
    )
    assert parsed == {
        "learning_rate": 1e-5,
        "packing": True,
        "max_length": None,
        "lr_scheduler_type": "cosine",
        "max_steps": 3,
    }
    with pytest.raises(TrainingOptionsError, match="key=value"):
        parse_set(["learning_rate"])
    (tmp_path / "c.yaml").write_text("learning_rate: 1e-5\nmax_steps: 9\n")
    (tmp_path / "c.json").write_text('{"beta": 0.2}')
    (tmp_path / "bad.yaml").write_text("- a list\n")
    assert read_config_file(tmp_path / "c.yaml") == {"learning_rate": 1e-5, "max_steps": 9}
    assert read_config_file(tmp_path / "c.json") == {"beta": 0.2}
    with pytest.raises(TrainingOptionsError, match="mapping"):
        read_config_file(tmp_path / "bad.yaml")
    import argparse

    args = argparse.Namespace(
        config=str(tmp_path / "c.yaml"), sets=["max_steps=5"], max_steps=None, beta=0.3
    )
    assert gather_options(args) == {"learning_rate": 1e-5, "max_steps": 5, "beta": 0.3}
    args.max_steps = 7
    assert gather_options(args)["max_steps"] == 7


def test_device_settings_and_grpo_batch(tmp_path: Path) -> None:
    from training.config import device_settings, resolve

    # A bf16 config cannot be built on a CPU-only box (TRL checks the hardware): the settings only.
    assert device_settings("sft", gpu=True) == {
        "bf16": True,
        "activation_checkpointing": True,
        "model_init_kwargs": {"dtype": "auto"},
        "packing": True,
    }
    assert "packing" not in device_settings("dpo", gpu=True)
    cpu = resolve("sft", {"gradient_checkpointing": True}, tmp_path, gpu=False).args
    assert cpu.use_cpu and not cpu.bf16 and cpu.activation_checkpointing  # the user's word wins
    assert cpu.save_strategy == "steps" and cpu.save_steps == 500 and cpu.save_total_limit == 2
    assert cpu.report_to in ("none", [], ["none"]) and not cpu.packing
    assert cpu.eval_strategy == "no"  # no validation split given
    evaluated = resolve("sft", {}, tmp_path, gpu=False, evaluate=True).args
    assert evaluated.eval_strategy == "steps" and evaluated.eval_steps == 0.2
    assert cpu.disable_tqdm is False and cpu.logging_steps == 0.01
    rm = resolve("rm", {"margin_scale": 0, "max_steps": 1e3}, tmp_path, gpu=False)
    assert rm.own == {"margin_scale": 0.0, "val_fraction": None, "val_min": 16}
    assert rm.args.learning_rate == 1e-5
    assert rm.args.max_steps == 1000 and isinstance(rm.args.max_steps, int)
    grpo = resolve("rlhf", {"num_generations": 6}, tmp_path, gpu=False).args
    assert grpo.beta == 0.0 and grpo.per_device_train_batch_size % 6 == 0
    with pytest.raises(TrainingOptionsError, match="GRPOConfig"):
        resolve(
            "rlhf", {"num_generations": 6, "per_device_train_batch_size": 8}, tmp_path, gpu=False
        )


def test_cli_errors_exit_non_zero_with_a_message(
    tiny: Path, build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "sft",
            "--data",
            str(build),
            "--model",
            str(tiny),
            "--out",
            str(out),
            "--set",
            "nope=1",
            "--quiet",
        ]
    )
    assert code != 0 and "unknown option 'nope'" in capsys.readouterr().err
    code = main(
        [
            "train",
            "rlhf",
            "--data",
            str(tmp_path / "missing"),
            "--policy",
            str(tiny),
            "--reward-model",
            str(tiny),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code != 0 and "does not exist" in capsys.readouterr().err
    assert_nothing_written(out)
