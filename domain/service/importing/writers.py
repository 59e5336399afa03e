"""Writing rows to a data file, the way readers.py reads them back.

The file kind follows the name: ``.jsonl`` (``.jsonl.gz`` gzipped, with a fixed mtime so
the same rows give the same bytes), ``.json`` (an array), ``.csv`` (message lists as JSON
in their cell), ``.parquet``; any other name is an HF ``datasets`` folder written with
``save_to_disk`` (needs the ``datasets`` package, in the training extra).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from domain.service.importing.formats import RowError

_encoder = msgspec.json.Encoder()


def output_kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    kinds = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
    kinds[".parquet"] = "parquet"
    return kinds.get(suffix, "hf")


def write_rows(rows: Iterable[dict[str, Any]], out: str | Path) -> int:
    """Write the rows; returns how many."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = output_kind(path)
    if kind == "jsonl":
        count = 0
        with _binary(path) as f:
            for row in rows:
                f.write(_encoder.encode(row) + b"\n")
                count += 1
        return count
    table = list(rows)
    if kind == "json":
        with _binary(path) as f:
            f.write(_encoder.encode(table))
    elif kind == "csv":
        _csv(table, path)
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(table), path)
    else:
        _hf(table, path)
    return len(table)


def _binary(path: Path) -> Any:
    if path.suffix.lower() == ".gz":
        return gzip.GzipFile(path, "wb", mtime=0)
    return open(path, "wb")


def _csv(table: list[dict[str, Any]], path: Path) -> None:
    columns = list(table[0]) if table else []
    with _binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        for row in table:
            writer.writerow(
                {
                    k: _encoder.encode(v).decode() if isinstance(v, list) else v
                    for k, v in row.items()
                }
            )


def _hf(table: list[dict[str, Any]], path: Path) -> None:
    try:
        import datasets
    except ImportError:
        raise RowError(
            "writing an HF datasets folder needs the datasets package "
            "(pip install -e '.[training]'); or name a .jsonl, .csv or .parquet file"
        ) from None
    datasets.Dataset.from_list(table).save_to_disk(str(path))
