"""`import data` rules: refusals leave the log unchanged, idempotence, detection, options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.bootstrap import open_app
from api.cli import main
from domain.model.data_import import source_id
from domain.model.states import TreeState
from domain.service.importing.formats import RowError, detect
from tests.test_import_data import chat, head, read_jsonl, write


def trees(data: Path, source: str) -> list[Any]:
    app = open_app(data)
    record = app.repository.get(source_id(source))
    return [app.repository.get(t) for f in record.files.values() for t in f.tree_ids]


def test_a_malformed_row_is_named_and_nothing_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    good = write([{"prompt": "seed"}], tmp_path / "seed.jsonl")
    assert main(["import", "data", str(good), "--data", str(data)]) == 0
    before = head(data)
    rows = [{"prompt": f"Q{i}", "chosen": "yes", "rejected": "no"} for i in range(700)]
    rows[650]["rejected"] = ["not", "a", "reply"]
    bad = write(rows, tmp_path / "bad.jsonl")
    capsys.readouterr()
    assert main(["import", "data", str(bad), "--data", str(data)]) != 0
    assert "row 650, column 'rejected'" in capsys.readouterr().err
    assert head(data) == before  # the 650 good rows before it were not recorded either


@pytest.mark.parametrize(
    "row, where",
    [
        ({"messages": [chat("assistant", "first?")]}, "row 1, column 'messages'"),
        ({"messages": [chat("user", "a"), chat("user", "b")]}, "row 1, column 'messages'"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "row 1, column 'messages'"),
        ({"messages": "hello"}, "row 1, column 'messages'"),
        ({"messages": [chat("user", "  ")]}, "row 1, column 'messages'"),
    ],
)
def test_malformed_chats_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], row: dict[str, Any], where: str
) -> None:
    path = write([{"messages": [chat("user", "ok")]}, row], tmp_path / "m.jsonl")
    data = tmp_path / "data"
    assert main(["import", "data", str(path), "--data", str(data)]) != 0
    assert where in capsys.readouterr().err
    assert not (data / "events.sqlite").exists() or head(data) == 0


def test_skip_bad_leaves_malformed_rows_out_and_counts_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"prompt": "a", "completion": "b", "label": True}, {"prompt": "c", "label": 1}]
    rows.append({"prompt": "d", "completion": "e", "label": "maybe"})
    path = write(rows, tmp_path / "c.jsonl")
    data = tmp_path / "data"
    assert main(["import", "data", str(path), "--data", str(data), "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "row 1, column 'completion'" in err and "row 2, column 'label'" in err
    assert [t.root.text for t in trees(data, "c")] == ["a"]


def test_reimport_adds_nothing_even_from_another_file_kind(tmp_path: Path) -> None:
    rows = [{"prompt": f"Q{i}", "completion": f"A{i}"} for i in range(30)] * 2  # duplicates
    data = tmp_path / "data"
    jsonl = write(rows, tmp_path / "d.jsonl")
    assert main(["import", "data", str(jsonl), "--data", str(data), "--source", "s"]) == 0
    after = head(data)
    assert len(trees(data, "s")) == 60  # identical rows stay two rows
    assert main(["import", "data", str(jsonl), "--data", str(data), "--source", "s"]) == 0
    assert head(data) == after
    parquet = write(rows, tmp_path / "d.parquet")
    assert main(["import", "data", str(parquet), "--data", str(data), "--source", "s"]) == 0
    app = open_app(data)
    assert len(app.repository.get(source_id("s")).files) == 2  # provenance of both files
    out = tmp_path / "out.jsonl"
    assert main(["export", "data", "--source", "s", "--out", str(out), "--data", str(data)]) == 0
    assert read_jsonl(out) == rows  # shared trees written once


def test_detection_by_columns_and_ambiguity() -> None:
    assert detect(["prompt"]) == "prompts"
    assert detect(["question", "id"]) == "prompts"
    assert detect(["messages", "id"]) == "messages"
    assert detect(["prompt", "chosen", "rejected"]) == "pairs"
    assert detect(["chosen", "rejected"]) == "pairs"
    assert detect(["prompt", "completion", "label"]) == "completions"
    with pytest.raises(RowError, match="--format"):
        detect(["messages", "chosen", "rejected"])
    with pytest.raises(RowError, match="--format"):
        detect(["input", "output"])


def test_ambiguous_file_asks_for_a_format_and_the_named_one_is_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"prompt": "p", "completion": "c", "chosen": "x", "rejected": "y"}]
    path = write(rows, tmp_path / "a.jsonl")
    data = str(tmp_path / "data")
    assert main(["import", "data", str(path), "--data", data]) != 0
    assert "name one with --format" in capsys.readouterr().err
    assert main(["import", "data", str(path), "--data", data, "--format", "completions"]) == 0


def test_implicit_and_string_pairs_round_trip(tmp_path: Path) -> None:
    implicit = [
        {
            "chosen": [chat("user", "2+2?"), chat("assistant", "4")],
            "rejected": [chat("user", "2+2?"), chat("assistant", "5")],
        }
    ]
    data = str(tmp_path / "data")
    for name, rows in [("imp.jsonl", implicit)]:
        assert main(["import", "data", str(write(rows, tmp_path / name)), "--data", data]) == 0
        out = tmp_path / f"out-{name}"
        assert main(["export", "data", "--source", "imp", "--out", str(out), "--data", data]) == 0
        assert read_jsonl(out) == rows
    [tree] = trees(tmp_path / "data", "imp")
    assert sorted((m.text, m.rank) for m in tree.messages.values() if m.rank is not None) == [
        ("4", 0),
        ("5", 1),
    ]


def test_prompts_go_to_review_or_straight_to_growing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = write([{"text": "Tell me a joke", "lang": "de"}], tmp_path / "p.jsonl")
    assert main(["import", "data", str(path), "--data", str(data), "--source", "a"]) == 0
    [tree] = trees(data, "a")
    assert tree.state is TreeState.INITIAL_PROMPT_REVIEW and tree.root.review_result is None
    assert tree.lang == "de" and tree.origin == "a"
    args = ["--source", "b", "--state", "growing"]
    assert main(["import", "data", str(path), "--data", str(data), *args]) == 0
    [tree] = trees(data, "b")
    assert tree.state is TreeState.GROWING and tree.root.review_result is True
    out = tmp_path / "out.jsonl"
    assert main(["export", "data", "--source", "b", "--out", str(out), "--data", str(data)]) == 0
    assert read_jsonl(out) == [{"text": "Tell me a joke", "lang": "de"}]


def test_wrong_state_for_a_format_is_refused(tmp_path: Path) -> None:
    path = write([{"prompt": "x"}], tmp_path / "p.jsonl")
    args = ["--data", str(tmp_path / "d"), "--state", "ranking"]
    assert main(["import", "data", str(path), *args]) != 0


def test_limit_lang_model_name_and_split(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = [{"prompt": f"P{i}", "completion": f"C{i}"} for i in range(10)]
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(rows[:6]),
            "test": datasets.Dataset.from_list(rows[6:]),
        }
    )
    dd.save_to_disk(str(tmp_path / "hf"))
    data = tmp_path / "data"
    args = ["--split", "test", "--limit", "3", "--lang", "fr", "--model-name", "m-1"]
    assert main(["import", "data", str(tmp_path / "hf"), "--data", str(data), *args]) == 0
    found = trees(data, "hf")
    assert [t.root.text for t in found] == ["P6", "P7", "P8"]
    reply = next(m for m in found[0].messages.values() if m.parent_id is not None)
    assert (reply.model_name, reply.synthetic, reply.lang) == ("m-1", True, "fr")
    assert main(["import", "data", str(tmp_path / "hf"), "--data", str(data), "--split", "x"]) != 0


def test_csv_with_message_lists_round_trips_through_csv(tmp_path: Path) -> None:
    rows = [{"messages": [chat("user", 'He said "hi", then left'), chat("assistant", "Ok.")]}]
    data = str(tmp_path / "data")
    src = write(rows, tmp_path / "m.jsonl")
    assert main(["import", "data", str(src), "--data", data]) == 0
    csv_out = tmp_path / "m2.csv"
    assert main(["export", "data", "--source", "m", "--out", str(csv_out), "--data", data]) == 0
    assert main(["import", "data", str(csv_out), "--data", data, "--source", "again"]) == 0
    out = tmp_path / "back.jsonl"
    assert main(["export", "data", "--source", "again", "--out", str(out), "--data", data]) == 0
    assert read_jsonl(out) == rows
    assert json.loads(out.read_text()) == rows[0]
