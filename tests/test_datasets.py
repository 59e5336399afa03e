"""Dataset builder: the rows of every kind, the split, and byte-identical rebuilds at a position."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID, uuid5

import pytest

from api.bootstrap import open_app
from api.cli import main
from domain.model.actor import SYSTEM
from domain.service.oa_import import import_trees
from projections import log_reader
from projections.datasets.build import build, split_of
from projections.datasets.rows import BuildOptions

NS = UUID("6f0b7a8e-0000-4000-8000-000000000000")


def node(
    tree: str,
    name: str,
    role: str,
    text: str | None = None,
    rank: int | None = None,
    ok: bool | None = True,
    synthetic: bool = False,
    replies: tuple = (),
) -> dict:
    data = {
        "message_id": str(uuid5(NS, f"{tree}/{name}")),
        "text": text or name,
        "role": role,
        "lang": "en",
        "review_count": 3,
        "review_result": ok,
        "deleted": False,
        "synthetic": synthetic,
        "rank": rank,
        "replies": list(replies),
    }
    for reply in data["replies"]:
        reply["parent_id"] = data["message_id"]
    return data


def shaped_tree(tree: str = "t", state: str = "ready_for_export", lang: str = "en") -> dict:
    """P0 -> A1 (rank 1) -> P2;  A2 (rank 0) -> P1 -> B1 (rank 0), B2 (rank 1);  A3 (rank 2);
    A4 rejected;  A5 synthetic (unranked)."""
    a, p = "assistant", "prompter"
    root = node(
        tree,
        "P0",
        p,
        replies=(
            node(tree, "A1", a, rank=1, replies=(node(tree, "P2", p),)),
            node(
                tree,
                "A2",
                a,
                rank=0,
                replies=(
                    node(
                        tree,
                        "P1",
                        p,
                        replies=(node(tree, "B1", a, rank=0), node(tree, "B2", a, rank=1)),
                    ),
                ),
            ),
            node(tree, "A3", a, rank=2),
            node(tree, "A4", a, ok=False),
            node(tree, "A5", a, synthetic=True),
        ),
    )
    root["lang"] = lang
    return {"message_tree_id": root["message_id"], "tree_state": state, "prompt": root}


def u(text: str) -> dict:
    return {"role": "user", "content": text}


def a(text: str) -> dict:
    return {"role": "assistant", "content": text}


def rows(out: Path, kind: str, split: str = "train") -> list[dict]:
    return [json.loads(line) for line in (out / kind / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    app = open_app(folder)
    report = import_trees(
        app,
        [shaped_tree(), shaped_tree("growing", state="growing"), shaped_tree("german", lang="de")],
    )
    assert report.imported == 3 and not report.failed
    return folder


def build_one(store: Path, out: Path, **options) -> dict:
    """Build with every tree on the train side (the German one filtered out)."""
    return build(store, out, BuildOptions(lang="en", val_fraction=0.0, **options))


def test_every_kind_from_one_ranked_tree(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    manifest = build_one(store, out)
    assert manifest["ready_trees"] == 1  # the growing and the German tree are left out
    assert rows(out, "sft") == [{"messages": [u("P0"), a("A2"), u("P1"), a("B1")]}]
    pairs = [
        (
            r["prompt"][-1]["content"],
            r["chosen"][0]["content"],
            r["rejected"][0]["content"],
            r["margin"],
        )
        for r in rows(out, "rm")
    ]
    assert pairs == [
        ("P0", "A2", "A1", 1.0),
        ("P0", "A2", "A3", 2.0),
        ("P0", "A1", "A3", 1.0),
        ("P1", "B1", "B2", 1.0),
    ]
    assert rows(out, "dpo") == rows(out, "rm")
    assert rows(out, "rm")[3]["prompt"] == [u("P0"), a("A2"), u("P1")]
    assert [
        (r["prompt"][-1]["content"], [c[0]["content"] for c in r["completions"]], r["ranks"])
        for r in rows(out, "rm_listwise")
    ] == [("P0", ["A2", "A1", "A3"], [0, 1, 2]), ("P1", ["B1", "B2"], [0, 1])]
    assert [(r["completion"][0]["content"], r["label"]) for r in rows(out, "kto")] == [
        ("A1", True),
        ("A2", True),
        ("A3", False),
        ("A4", False),
        ("B1", True),
        ("B2", False),
    ]
    assert [[m["content"] for m in r["prompt"]] for r in rows(out, "rl")] == [
        ["P0"],
        ["P0", "A1", "P2"],
        ["P0", "A2", "P1"],
    ]
    assert manifest["rows"]["kto"] == {"train": 6, "validation": 0}


def test_sft_path_modes_and_synthetic_messages(store: Path, tmp_path: Path) -> None:
    build_one(store, tmp_path / "all", sft_paths="all", kinds=("sft",))
    assert [[m["content"] for m in r["messages"]] for r in rows(tmp_path / "all", "sft")] == [
        ["P0", "A1"],
        ["P0", "A2", "P1", "B1"],
        ["P0", "A2", "P1", "B2"],
        ["P0", "A3"],
    ]
    build_one(store, tmp_path / "top", sft_paths="top-k", top_k=1, kinds=("sft",))
    assert [[m["content"] for m in r["messages"]] for r in rows(tmp_path / "top", "sft")] == [
        ["P0", "A2", "P1", "B1"]
    ]
    build_one(store, tmp_path / "syn", sft_paths="all", kinds=("sft",), include_synthetic=True)
    assert ["P0", "A5"] in [
        [m["content"] for m in r["messages"]] for r in rows(tmp_path / "syn", "sft")
    ]
    assert not (tmp_path / "top" / "rm").exists()


def test_parquet_holds_the_same_rows_as_jsonl(store: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "ds"
    build_one(store, out)
    for kind in ("sft", "rm", "rm_listwise", "kto", "rl"):
        assert pq.read_table(out / kind / "train.parquet").to_pylist() == rows(out, kind)
        assert pq.read_table(out / kind / "validation.parquet").num_rows == 0


def test_split_keeps_each_tree_on_one_side(tmp_path: Path) -> None:
    app = open_app(tmp_path / "data")
    import_trees(app, [shaped_tree(f"t{i}") for i in range(40)])
    out = tmp_path / "ds"
    manifest = build(tmp_path / "data", out, BuildOptions(val_fraction=0.5, kinds=("kto",)))
    assert (
        manifest["rows"]["kto"]["train"] % 6 == 0 and manifest["rows"]["kto"]["validation"] % 6 == 0
    )
    assert 0 < manifest["rows"]["kto"]["validation"] < 240
    for split in ("train", "validation"):
        roots = {r["prompt"][0]["content"] for r in rows(out, "kto", split)}
        assert roots == {"P0"}
    ids = [UUID(shaped_tree(f"t{i}")["message_tree_id"]) for i in range(40)]
    expected_val = sum(split_of(i, 0.5) == "validation" for i in ids) * 6
    assert manifest["rows"]["kto"]["validation"] == expected_val


def test_rebuild_at_a_position_is_byte_identical_whatever_came_after(
    store: Path, tmp_path: Path
) -> None:
    db = log_reader.events_db(store)
    position = log_reader.log_position(db)
    first = build(store, tmp_path / "first", BuildOptions(val_fraction=0.3), as_of=position)

    # Later facts: a new ready tree, and a reply of the old one deleted.
    app = open_app(store)
    import_trees(app, [shaped_tree("later")])
    tree_id = UUID(shaped_tree()["message_tree_id"])
    app.delete_message(tree_id=tree_id, message_id=uuid5(NS, "t/A2"), actor=SYSTEM)
    assert log_reader.log_position(db) > position

    assert (
        main(
            [
                "datasets",
                "build",
                "--data",
                str(store),
                "--out",
                str(tmp_path / "again"),
                "--as-of",
                str(position),
                "--val-fraction",
                "0.3",
            ]
        )
        == 0
    )
    files = sorted(
        p.relative_to(tmp_path / "first") for p in (tmp_path / "first").rglob("*") if p.is_file()
    )
    assert files and files == sorted(
        p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file()
    )
    for name in files:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert first["log_position"] == position and len(first["files"]) == len(files) - 1

    now = build(store, tmp_path / "now", BuildOptions(val_fraction=0.3))
    assert now["ready_trees"] == first["ready_trees"] + 1
    assert now["files"] != first["files"]


def test_bad_options_and_foreign_folders_are_refused(store: Path, tmp_path: Path) -> None:
    base = ["datasets", "build", "--data", str(store)]
    assert main(base + ["--out", str(tmp_path / "x"), "--kinds", "sft,ppo"]) == 2
    assert main(base + ["--out", str(tmp_path / "x"), "--val-fraction", "1.5"]) == 2
    assert main(base + ["--out", str(tmp_path / "x"), "--as-of", "100000"]) == 2
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(base + ["--out", str(foreign)]) == 2
    assert (foreign / "notes.txt").read_text() == "mine"
    # A folder we built before is rebuilt in place, its old kinds cleared.
    assert main(base + ["--out", str(tmp_path / "ds")]) == 0
    assert main(base + ["--out", str(tmp_path / "ds"), "--kinds", "rl"]) == 0
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["manifest.json", "rl"]
