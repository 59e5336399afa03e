"""`dataengine import data` / `export data`: every format from every file kind, round trips,
dataset rows equal to the input, refusals that leave the log unchanged, idempotence."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api.cli import main
from projections import log_reader

SYSTEM = {"role": "system", "content": "You are terse."}


def chat(role: str, text: str) -> dict[str, str]:
    return {"role": role, "content": text}


ROWS: dict[str, list[dict[str, Any]]] = {
    "prompts": [{"prompt": f"What is {i} + {i}?"} for i in range(6)],
    "messages": [
        {"messages": [SYSTEM, chat("user", "Hi"), chat("assistant", "Hello.")]},
        {
            "messages": [
                chat("user", "Name a colour"),
                chat("assistant", "Red."),
                chat("user", "Another"),
                chat("assistant", "Blue."),
            ]
        },
        {"messages": [chat("user", "Unanswered?")]},
    ],
    "pairs": [
        {
            "prompt": [SYSTEM, chat("user", f"Say {i}")],
            "chosen": [chat("assistant", f"{i}")],
            "rejected": [chat("assistant", f"not {i}")],
        }
        for i in range(5)
    ],
    "completions": [
        {"prompt": f"Spell {w}", "completion": w.upper(), "label": i % 2 == 0}
        for i, w in enumerate(["cat", "dog", "owl", "cat"])
    ],
}


def write(rows: list[dict[str, Any]], path: Path) -> Path:
    """Input files written with the plain libraries, not with the code under test."""
    name = path.name
    if name.endswith(".jsonl") or name.endswith(".jsonl.gz"):
        text = "".join(json.dumps(r) + "\n" for r in rows).encode()
        path.write_bytes(gzip.compress(text) if name.endswith(".gz") else text)
    elif name.endswith(".json"):
        path.write_text(json.dumps(rows))
    elif name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        datasets = pytest.importorskip("datasets")
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def head(data: Path) -> int:
    return log_reader.log_position(log_reader.events_db(data))


def run(*args: str) -> int:
    return main([*args])


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "hf"])
@pytest.mark.parametrize("fmt", list(ROWS))
def test_each_format_round_trips_from_each_file_kind(tmp_path: Path, fmt: str, kind: str) -> None:
    source = write(ROWS[fmt], tmp_path / (f"in.{kind}" if kind != "hf" else "in_hf"))
    data = str(tmp_path / "data")
    assert run("import", "data", str(source), "--data", data, "--source", "mine") == 0
    out = tmp_path / "out.jsonl"
    assert run("export", "data", "--source", "mine", "--out", str(out), "--data", data) == 0
    assert read_jsonl(out) == ROWS[fmt]


@pytest.mark.parametrize("name", ["in.json", "in.jsonl.gz", "in.csv"])
def test_json_gzip_and_csv_files_import(tmp_path: Path, name: str) -> None:
    rows = ROWS["completions"]
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_text(
            "prompt,completion,label\n"
            + "".join(f"{r['prompt']},{r['completion']},{str(r['label']).lower()}\n" for r in rows)
        )
    else:
        write(rows, path)
    data = str(tmp_path / "data")
    assert run("import", "data", str(path), "--data", data, "--source", "s") == 0
    out = tmp_path / "out.jsonl"
    assert run("export", "data", "--source", "s", "--out", str(out), "--data", data) == 0
    assert read_jsonl(out) == rows


def build(tmp_path: Path, data: str, *extra: str) -> Path:
    out = tmp_path / "ds"
    assert (
        run("datasets", "build", "--out", str(out), "--data", data, "--val-fraction", "0", *extra)
        == 0
    )
    return out


def key(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True)


def test_pairs_become_rm_and_dpo_rows_with_chosen_above_rejected(tmp_path: Path) -> None:
    rows = [{"prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(8)]
    data = str(tmp_path / "data")
    assert run("import", "data", str(write(rows, tmp_path / "p.parquet")), "--data", data) == 0
    ds = build(tmp_path, data)
    expected = [
        {
            "prompt": [chat("user", r["prompt"])],
            "chosen": [chat("assistant", r["chosen"])],
            "rejected": [chat("assistant", r["rejected"])],
            "margin": 1.0,
        }
        for r in rows
    ]
    for kind in ("rm", "dpo"):
        assert sorted(map(key, read_jsonl(ds / kind / "train.jsonl"))) == sorted(map(key, expected))


def test_completions_become_kto_rows_and_messages_sft_rows(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    completions = write(ROWS["completions"], tmp_path / "c.jsonl")
    messages = write(ROWS["messages"][:2], tmp_path / "m.jsonl")
    assert run("import", "data", str(completions), "--data", data) == 0
    assert run("import", "data", str(messages), "--data", data) == 0
    ds = build(tmp_path, data)
    kto = [
        {
            "prompt": [chat("user", r["prompt"])],
            "completion": [chat("assistant", r["completion"])],
            "label": r["label"],
        }
        for r in ROWS["completions"]
    ]
    # every assistant turn of the chats is an accepted reply too
    turns = ROWS["messages"][1]["messages"]
    chats = [
        {"prompt": [chat("user", "Hi")], "completion": [chat("assistant", "Hello.")]},
        {"prompt": turns[:1], "completion": turns[1:2]},
        {"prompt": turns[:3], "completion": turns[3:]},
    ]
    want_kto = kto + [{**c, "label": True} for c in chats]
    assert sorted(map(key, read_jsonl(ds / "kto" / "train.jsonl"))) == sorted(map(key, want_kto))
    sft = read_jsonl(ds / "sft" / "train.jsonl")
    # accepted completions are one-turn threads; the chats keep their turns (system aside)
    want = [
        {"messages": [m for m in r["messages"] if m["role"] != "system"]}
        for r in ROWS["messages"][:2]
    ]
    want += [{"messages": k["prompt"] + k["completion"]} for k in kto if k["label"]]
    assert sorted(map(key, sft)) == sorted(map(key, want))
