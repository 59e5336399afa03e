"""The image path end to end (without a browser): a prompt with an image, a tiny
vision-language model pre-labels it with two candidates, people review and rank them, the
vision datasets are built (images embedded, hashed in the manifest) and SFT and DPO train
the tiny VLM for two steps each."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
from pathlib import Path

import pytest

from api.cli import main
from api.storage.blobs import blob_store
from domain.model.states import TreeState
from tests.test_images import damage
from tests.test_prelabel import Store, cli_prelabel
from tests.test_prelabel_vision import image_tree
from training.tiny_vlm import init_tiny_vlm


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    return init_tiny_vlm(tmp_path_factory.mktemp("vlm") / "model")


def ranked_image_tree(store: Store, tiny_vlm: Path, capsys) -> tuple:
    tree_id = image_tree(store, "What colour is the square?", [(220, 30, 30)])
    store.app.close()
    assert cli_prelabel(store, str(tiny_vlm), capsys)["added"] == 2
    store.reopen()
    replies = sorted(m.id for m in store.model_replies(tree_id))
    for reply in replies:
        store.review(tree_id, reply)
    assert store.app.get_tree(tree_id).state is TreeState.RANKING
    for _ in range(2):
        store.app.submit_ranking(
            actor=store.person(), tree_id=tree_id, parent_id=tree_id, ranked_message_ids=replies
        )
    assert store.app.get_tree(tree_id).state is TreeState.READY_FOR_EXPORT
    store.app.close()
    return tree_id, replies


def build(store: Store, out: Path, capsys) -> dict:
    argv = ["datasets", "build", "--images", "--data", str(store.folder), "--out", str(out)]
    argv += ["--kinds", "sft,dpo", "--sft-model-replies", "--val-fraction", "0"]
    assert main(argv) == 0, capsys.readouterr()
    return json.loads((out / "manifest.json").read_text())


def test_image_prompt_prelabelled_ranked_built_and_trained(tmp_path: Path, tiny_vlm: Path, capsys):
    from datasets import Dataset

    store = Store(tmp_path / "data", goal_tree_size=3, max_children_count=2)
    tree_id, _ = ranked_image_tree(store, tiny_vlm, capsys)
    out = tmp_path / "build"
    manifest = build(store, out, capsys)
    assert manifest["rows"] == {
        "sft": {"train": 1, "validation": 0},
        "dpo": {"train": 1, "validation": 0},
    }
    tree = store.app.get_tree(tree_id)  # (closed app: the cached aggregate is enough)
    (image,) = tree.root.images
    assert manifest["images"] == {image.sha256: f"blobs/sha256/{image.sha256[:2]}/{image.sha256}"}

    sft = Dataset.load_from_disk(str(out / "sft" / "hf" / "train"))
    row = sft[0]
    assert row["images"][0].size == (image.width, image.height)
    assert [p["type"] for p in row["messages"][0]["content"]] == ["image", "text"]
    dpo = json.loads((out / "dpo" / "train.jsonl").read_text().splitlines()[0])
    assert dpo["images"] == [manifest["images"][image.sha256]]
    assert dpo["chosen"][0]["content"][-1]["type"] == "text"

    for kind in ("sft", "dpo"):
        argv = ["train", kind, "--data", str(out), "--model", str(tiny_vlm)]
        argv += ["--out", str(tmp_path / kind), "--max-steps", "2", "--quiet"]
        argv += ["--set", "per_device_train_batch_size=1", "--set", "eval_strategy=no"]
        assert main(argv) == 0, capsys.readouterr()
        metrics = json.loads((tmp_path / kind / "metrics.json").read_text())
        assert metrics["global_step"] == 2, metrics


def test_a_missing_image_blob_stops_the_build(tmp_path: Path, tiny_vlm: Path, capsys):
    store = Store(tmp_path / "data", goal_tree_size=3, max_children_count=2)
    tree_id, _ = ranked_image_tree(store, tiny_vlm, capsys)
    (image,) = store.app.get_tree(tree_id).root.images
    damage(blob_store(store.folder), image.sha256, None)  # a file, or a PostgreSQL row
    out = tmp_path / "build"
    argv = ["datasets", "build", "--images", "--data", str(store.folder), "--out", str(out)]
    assert main(argv) == 2
    assert "missing" in capsys.readouterr().err
    assert not (out / "manifest.json").exists()
