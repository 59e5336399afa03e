"""Writing dataset splits: JSONL, parquet, an HF datasets folder when `datasets` is installed.

Every byte is a function of the rows: fixed key order, fixed parquet schemas (never
inferred, so an empty split has the same columns), no timestamps anywhere. The HF folder
is the exception: `save_to_disk` writes a random fingerprint, so it is listed in the
manifest but left out of the reproducibility promise.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import msgspec

SPLITS = ("train", "validation")


def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    chat = pa.list_(message)
    pair = pa.schema([("prompt", chat), ("chosen", chat), ("rejected", chat),
                      ("margin", pa.float64())])
    return {
        "sft": pa.schema([("messages", chat)]),
        "rm": pair,
        "dpo": pair,
        "rm_listwise": pa.schema([("prompt", chat), ("completions", pa.list_(chat)),
                                  ("ranks", pa.list_(pa.int64()))]),
        "kto": pa.schema([("prompt", chat), ("completion", chat), ("label", pa.bool_())]),
        "rl": pa.schema([("prompt", chat)]),
    }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_kind(folder: Path, kind: str, splits: dict[str, list[dict[str, Any]]],
               hf: bool = True) -> list[Path]:
    """Write one kind's splits; returns the files written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schemas()[kind]
    folder.mkdir(parents=True, exist_ok=True)
    encoder = msgspec.json.Encoder()
    written = []
    for split in SPLITS:
        rows = splits.get(split, [])
        jsonl = folder / f"{split}.jsonl"
        jsonl.write_bytes(encoder.encode_lines(rows))
        parquet = folder / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), parquet, compression="zstd")
        written += [jsonl, parquet]
    if hf:
        written += _write_hf(folder / "hf", splits, schema)
    return written


def copy_kind(source: Path, folder: Path) -> list[Path]:
    """A kind whose rows equal another's (dpo and rm): copy its JSONL and parquet files."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source.rglob("*")):
        if path.is_file():
            target = folder / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            written.append(target)
    return written


def _write_hf(folder: Path, splits: dict[str, list[dict[str, Any]]], schema: Any) -> list[Path]:
    try:
        from datasets import Dataset, DatasetDict, Features
    except ImportError:
        return []
    features = Features.from_arrow_schema(schema)
    # Column-wise, so an empty split still gets the kind's columns (from_list([]) has none).
    DatasetDict({split: Dataset.from_dict(
        {name: [row[name] for row in splits.get(split, [])] for name in schema.names},
        features=features) for split in SPLITS}).save_to_disk(str(folder))
    return sorted(p for p in folder.rglob("*") if p.is_file())
