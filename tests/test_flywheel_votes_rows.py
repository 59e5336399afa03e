"""Votes on model-written replies reach the dataset rows (pairs, KTO, optionally SFT)."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID, uuid5

import pytest

from api.bootstrap import open_app
from domain.service.oa_import import import_trees
from projections import log_reader
from projections.datasets.build import DatasetOptionsError, build
from projections.datasets.rows import BuildOptions
from projections.datasets.votes import vote_rows_at

NS = UUID("0c7f2a10-0000-4000-8000-000000000012")


def reply(name: str, rank: int | None, model: str | None = None, ok: bool = True) -> dict:
    return {
        "message_id": str(uuid5(NS, name)),
        "text": name,
        "role": "assistant",
        "lang": "en",
        "review_count": 3,
        "review_result": ok,
        "synthetic": model is not None,
        "model_name": model,
        "rank": rank,
        "replies": [],
    }


def voted_tree() -> dict:
    """P0 -> M1 (model mA, rank 0), H1 (a person, rank 1), M2 (model mB, rank 2),
    M3 (model mA, never ranked)."""
    replies = [reply("M1", 0, "mA"), reply("H1", 1), reply("M2", 2, "mB"), reply("M3", None, "mA")]
    root = {
        "message_id": str(uuid5(NS, "P0")),
        "text": "P0",
        "role": "prompter",
        "lang": "en",
        "review_count": 3,
        "review_result": True,
        "synthetic": False,
        "replies": replies,
    }
    for r in replies:
        r["parent_id"] = root["message_id"]
    return {"message_tree_id": root["message_id"], "tree_state": "ready_for_export", "prompt": root}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    app = open_app(folder)
    try:
        assert import_trees(app, [voted_tree()]).imported == 1
    finally:
        app.close()
    return folder


def rows(out: Path, kind: str) -> list[dict]:
    return [json.loads(line) for line in (out / kind / "train.jsonl").read_text().splitlines()]


def texts(turns: list[dict]) -> list[str]:
    return [t["content"] for t in turns]


def test_ranked_model_replies_make_pairs_and_kto_rows(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain"
    manifest = build(store, out, BuildOptions(val_fraction=0.0))
    pairs = [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows(out, "rm")]
    assert pairs == [("M1", "H1"), ("M1", "M2"), ("H1", "M2")]  # model-model, model-human
    assert rows(out, "dpo") == rows(out, "rm")
    assert [(r["completion"][0]["content"], r["label"]) for r in rows(out, "kto")] == [
        ("M1", True),
        ("H1", True),
        ("M2", False),
    ]  # M3 was never ranked: no vote, no row
    assert [texts(r["messages"]) for r in rows(out, "sft")] == [["P0", "H1"]]
    assert manifest["options"]["sft_model_replies"] is False


def test_sft_may_take_the_model_reply_ranked_best(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "fly"
    manifest = build(store, out, BuildOptions(val_fraction=0.0, sft_model_replies=True))
    assert [texts(r["messages"]) for r in rows(out, "sft")] == [["P0", "M1"]]
    assert manifest["options"]["sft_model_replies"] is True
    with pytest.raises(DatasetOptionsError, match="pre-cut"):
        build(store, tmp_path / "x", BuildOptions(sft_model_replies=True), source="projection")


def test_vote_rows_count_per_model(store: Path) -> None:
    position = log_reader.resolve_position(log_reader.events_db(store), None)
    plain = vote_rows_at(store, position, BuildOptions())
    assert (plain["pairs"], plain["kto"], plain["sft"]) == (3, 2, 0)
    assert plain["models"] == {
        "mA": {"pairs": 2, "kto": 1, "sft": 0},
        "mB": {"pairs": 2, "kto": 1, "sft": 0},
    }
    fly = vote_rows_at(store, position, BuildOptions(sft_model_replies=True))
    assert fly["sft"] == 1 and fly["models"]["mA"]["sft"] == 1
