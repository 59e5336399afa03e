"""Trainer-grade runs (issue 15): a signal keeps a checkpoint and --resume ends where an
uninterrupted run does; tensorboard event files; LoRA adapters saved and merged for every
kind; a tampered build refused and never written into; a registered model's folder is
never a run's --out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from api.cli import main
from tests.test_training import FAST, GOOD, QUESTIONS, write_build
from training.errors import TrainingDataError, TrainingOptionsError

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.tiny import init_tiny

    return init_tiny(tmp_path_factory.mktemp("tiny") / "model", texts=QUESTIONS + [GOOD])


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_build(tmp_path_factory.mktemp("ds"))


def sft_args(build: Path, tiny: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "sft",
        "--data",
        str(build),
        "--model",
        str(tiny),
        "--out",
        str(out),
        "--set",
        "learning_rate=1e-3",
        "--set",
        "per_device_train_batch_size=2",
        "--set",
        "num_train_epochs=6",  # 4 steps an epoch on the 7 training rows: 24 steps
        "--set",
        "save_steps=2",
        "--quiet",
        *extra,
    ]


def test_a_signal_keeps_a_checkpoint_and_resume_ends_at_the_same_step(
    tiny: Path, build: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    runs = {}
    for sig in (signal.SIGINT, signal.SIGTERM):  # both at once: the imports overlap
        out = tmp_path / sig.name
        command = [sys.executable, "-m", "api.cli", *sft_args(build, tiny, out)]
        runs[sig] = (out, subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE))
    waiting, deadline = dict(runs), time.monotonic() + 180
    while waiting and time.monotonic() < deadline:  # signal each run at its first checkpoint
        for sig, (out, process) in list(waiting.items()):
            partial = out.parent / f".{out.name}.partial"
            if process.poll() is not None or any(partial.glob("checkpoint-*")):
                process.send_signal(sig)
                del waiting[sig]
        time.sleep(0.01)
    for sig, (out, process) in runs.items():
        _, err = process.communicate(timeout=120)
        assert process.returncode != 0, err.decode()
        assert "--resume" in err.decode() and not out.exists()
        partial = out.parent / f".{out.name}.partial"
        kept = sorted(partial.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        assert kept, f"{sig.name} left no checkpoint"
        step = json.loads((kept[-1] / "trainer_state.json").read_text())["global_step"]
        assert 2 <= step < 24
        assert main(sft_args(build, tiny, out, "--resume")) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["resumed_from"] == kept[-1].name and metrics["global_step"] == 24
        assert not partial.exists() and not list(out.glob("checkpoint-*"))
    whole = tmp_path / "uninterrupted"
    assert main(sft_args(build, tiny, whole)) == 0
    assert json.loads((whole / "metrics.json").read_text())["global_step"] == 24


def test_resume_from_checkpoint_is_honoured_and_checked(
    tiny: Path, build: Path, tmp_path: Path
) -> None:
    from training.runs import train

    kw = {"data": build, "model": str(tiny), "progress": False}
    with pytest.raises(TrainingOptionsError, match="no checkpoint there"):
        train("sft", out=tmp_path / "a", options={"resume_from_checkpoint": str(tmp_path)}, **kw)
    with pytest.raises(TrainingOptionsError, match="nothing to resume"):
        train("sft", out=tmp_path / "a", options={"resume_from_checkpoint": True}, **kw)
    assert not list(tmp_path.iterdir())


def test_tensorboard_writes_event_files_and_a_missing_tracker_is_named(
    tiny: Path, build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import tracking
    from training.runs import train

    kw = {"data": build, "model": str(tiny), "progress": False}
    out = tmp_path / "tb"
    train("sft", out=out, options={**FAST, "max_steps": 2, "report_to": "tensorboard"}, **kw)
    events = list((out / "runs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["report_to"] == ["tensorboard"] and metrics["device"]["world_size"] == 1
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TrainingOptionsError, match="needs the tensorboard package"):
        train("sft", out=tmp_path / "none", options={"report_to": ["tensorboard"]}, **kw)
    assert not (tmp_path / "none").exists()


@pytest.fixture(scope="module")
def lora_rm(tiny: Path, build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A merged LoRA reward model: full weights in OUT, the adapter in OUT/adapter."""
    out = tmp_path_factory.mktemp("lora") / "rm"
    code = main(
        [
            "train",
            "rm",
            "--data",
            str(build),
            "--model",
            str(tiny),
            "--out",
            str(out),
            "--max-steps",
            "2",
            "--lora",
            "r=4,alpha=8,dropout=0,target=q_proj+v_proj,merge=true",
            "--quiet",
        ]
    )
    assert code == 0
    return out


def test_a_merged_lora_run_holds_full_weights_and_its_adapter(lora_rm: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    assert (lora_rm / "model.safetensors").is_file()
    adapter = json.loads((lora_rm / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and set(adapter["target_modules"]) == {"q_proj", "v_proj"}
    assert "score" in adapter["modules_to_save"]  # the RM's new head is trained and kept
    model = AutoModelForSequenceClassification.from_pretrained(lora_rm)
    assert model.config.num_labels == 1 and not any(
        "lora" in n for n, _ in model.named_parameters()
    )
    metrics = json.loads((lora_rm / "metrics.json").read_text())
    assert metrics["lora"]["merge"] is True and metrics["pairwise_accuracy"]["pairs"] > 0


@pytest.mark.parametrize("kind", ["sft", "dpo", "kto", "rlhf"])
def test_lora_trains_an_adapter_for_every_kind(
    kind: str, tiny: Path, build: Path, lora_rm: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.runs import train

    options = {**FAST, "max_steps": 1}
    if kind == "rlhf":
        options.update(num_generations=4, max_completion_length=8)
    out = tmp_path / kind
    train(
        kind,
        data=build,
        model=str(tiny),
        out=out,
        options=options,
        reward_model=str(lora_rm) if kind == "rlhf" else None,
        lora="r=4,alpha=8",
        progress=False,
    )
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    base = AutoModelForCausalLM.from_pretrained(tiny)
    adapted = PeftModel.from_pretrained(base, str(out))  # the adapter loads onto its base
    assert any("lora_A" in n for n, _ in adapted.named_parameters())


def test_lora_spec_errors_and_quantisation_needs_a_gpu() -> None:
    from training.lora import parse, quantization

    assert parse("r=8,target=all-linear")["alpha"] == 32.0
    for bad in ("rank=8", "r=0", "dropout=x", "bits=3"):
        with pytest.raises(TrainingOptionsError, match="--lora"):
            parse(bad)
    with pytest.raises(TrainingOptionsError, match="CUDA GPU and the bitsandbytes"):
        quantization(parse("bits=4"), gpu=False)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_training_never_writes_into_the_build_and_a_tampered_file_is_refused(
    tiny: Path, tmp_path: Path
) -> None:
    from datasets import load_dataset

    from training.runs import train

    build = write_build(tmp_path / "build")
    before = snapshot(build)
    kw = {"model": str(tiny), "options": {**FAST, "max_steps": 2}, "progress": False}
    for kind in ("sft", "rm", "kto"):
        train(kind, data=build, out=tmp_path / kind, **kw)
    assert snapshot(build) == before  # no cache-*.arrow left beside the rows
    # what `trl sft --dataset_name <build>/sft` does
    loaded = load_dataset(str(build / "sft"), cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].num_rows == 10
    arrow = next((build / "rm" / "hf" / "train").glob("*.arrow"))
    changed = bytearray(arrow.read_bytes())
    changed[len(changed) // 2] ^= 1  # one bit, mid-file
    arrow.write_bytes(bytes(changed))
    with pytest.raises(TrainingDataError, match="does not match its sha256"):
        train("rm", data=build, out=tmp_path / "tampered", **kw)
    manifest = json.loads((build / "manifest.json").read_text())
    (build / "manifest.json").write_text(json.dumps({**manifest, "format": "other/9"}))
    with pytest.raises(TrainingDataError, match="format 'other/9'"):
        train("sft", data=build, out=tmp_path / "tampered", **kw)
    assert not (tmp_path / "tampered").exists()


def test_out_on_a_registered_model_is_refused(tiny: Path, build: Path, tmp_path: Path) -> None:
    from training.registry import mark_registered
    from training.runs import train

    out = tmp_path / "run"
    kw = {"data": build, "model": str(tiny), "out": out, "progress": False}
    train("sft", options={**FAST, "max_steps": 1}, **kw)
    mark_registered(str(out), "demo-sft")
    weights = (out / "model.safetensors").read_bytes()
    with pytest.raises(TrainingOptionsError, match="registered model 'demo-sft'"):
        train("sft", options={**FAST, "max_steps": 1}, **kw)
    assert (out / "model.safetensors").read_bytes() == weights


def test_set_values_are_typed_by_the_config_field(tmp_path: Path) -> None:
    from training.config import parse_set, resolve

    options = parse_set(["save_strategy=no", "packing=yes", "run_name=2024"])
    assert options == {"save_strategy": "no", "packing": "yes", "run_name": 2024}
    args = resolve("sft", options, tmp_path, gpu=False).args
    assert args.save_strategy == "no" and args.packing is True and args.run_name == "2024"


def test_the_gpu_launch_configs_parse() -> None:
    import yaml

    folder = ROOT / "training" / "configs"
    ddp = yaml.safe_load((folder / "accelerate_ddp.yaml").read_text())
    zero3 = yaml.safe_load((folder / "accelerate_zero3.yaml").read_text())
    assert ddp["distributed_type"] == "MULTI_GPU"
    assert zero3["distributed_type"] == "DEEPSPEED" and zero3["deepspeed_config"]["zero_stage"] == 3
