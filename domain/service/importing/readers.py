"""Reading rows from a user's data file: JSONL, JSON, CSV, parquet or an HF datasets folder.

Text files may be gzipped (told by their first bytes, not their name). Rows stream in
batches, so reading a file twice (once to check every row, once to record) keeps memory
flat in its size; a JSON array is the exception, it has to be parsed whole. An HF folder
(``Dataset.save_to_disk``) is read with pyarrow from its Arrow stream files, so the
``datasets`` package is not needed to import one. Each file has a sha256 (for a folder: of
the data files of the split read), recorded as the rows' provenance.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from domain.service.importing.formats import RowError

KINDS = ("jsonl", "json", "csv", "parquet", "hf")
LIST_COLUMNS = ("messages", "prompt", "chosen", "rejected", "completion")
BATCH = 2048

_decoder = msgspec.json.Decoder()


def _gzipped(path: Path) -> bool:
    with open(path, "rb") as probe:
        return probe.read(2) == b"\x1f\x8b"


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if _gzipped(path) else open(path, "rb")  # type: ignore[return-value]


def _kind(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return "hf"
        raise RowError(f"{path} is a folder but not an HF datasets folder (save_to_disk)")
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        with _open(path) as f:
            head = f.read(4096).lstrip()
        return "json" if head.startswith(b"[") else "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise RowError(f"{path.name}: not a .jsonl, .json, .csv, .parquet file or an HF folder")


def _csv_cell(column: str, value: str) -> Any:
    """CSV has only text: message lists are JSON in their cell."""
    if column in LIST_COLUMNS and value.startswith("[{"):
        try:
            decoded = _decoder.decode(value)
        except msgspec.DecodeError:
            return value
        if isinstance(decoded, list) and all(isinstance(m, dict) for m in decoded):
            return decoded
    return value


@dataclass
class DataFile:
    path: Path
    kind: str
    split: str | None = None

    @classmethod
    def open(cls, path: str | Path, split: str | None = None) -> DataFile:
        path = Path(path)
        if not path.exists():
            raise RowError(f"no such file or folder: {path}")
        kind = _kind(path)
        return cls(path, kind, cls._split(path, split) if kind == "hf" else None)

    @staticmethod
    def _split(path: Path, split: str | None) -> str | None:
        listing = path / "dataset_dict.json"
        if not listing.is_file():
            return None  # a single Dataset: no splits
        splits = json.loads(listing.read_text())["splits"]
        chosen = split or ("train" if "train" in splits else splits[0])
        if chosen not in splits:
            raise RowError(f"{path.name} has no split {chosen!r} (it has {', '.join(splits)})")
        return str(chosen)

    # ------------------------------------------------------------------ identity
    def data_files(self) -> list[Path]:
        if self.kind != "hf":
            return [self.path]
        folder = self.path / self.split if self.split else self.path
        state = json.loads((folder / "state.json").read_text())
        return [folder / f["filename"] for f in state["_data_files"]]

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for file in self.data_files():
            with open(file, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        return digest.hexdigest()

    # ------------------------------------------------------------------ rows
    def columns(self) -> list[str]:
        for batch in self.batches():
            return list(batch[0]) if batch else []
        return []

    def rows(self) -> Iterator[dict[str, Any]]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        reader = getattr(self, f"_{self.kind}")
        yield from reader()

    def _jsonl(self) -> Iterator[list[dict[str, Any]]]:
        batch: list[dict[str, Any]] = []
        with _open(self.path) as lines:
            for number, line in enumerate(lines):
                if not line.strip():
                    continue
                try:
                    item = _decoder.decode(line)
                except msgspec.DecodeError as e:
                    raise RowError(f"line {number + 1}: not JSON: {e}") from None
                if not isinstance(item, dict):
                    raise RowError(f"line {number + 1}: not a JSON object")
                batch.append(item)
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _json(self) -> Iterator[list[dict[str, Any]]]:
        with _open(self.path) as f:
            try:
                items = _decoder.decode(f.read())
            except msgspec.DecodeError as e:
                raise RowError(f"{self.path.name}: not JSON: {e}") from None
        if not isinstance(items, list):
            raise RowError(f"{self.path.name}: a JSON file holds an array of row objects")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise RowError(f"row {i}: not a JSON object")
        for start in range(0, len(items), BATCH):
            yield items[start : start + BATCH]

    def _csv(self) -> Iterator[list[dict[str, Any]]]:
        delimiter = "\t" if ".tsv" in [s.lower() for s in self.path.suffixes] else ","
        with _open(self.path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
            reader = csv.DictReader(text, delimiter=delimiter)
            batch: list[dict[str, Any]] = []
            for i, record in enumerate(reader):
                if None in record:
                    raise RowError(f"row {i}: more cells than the header has columns")
                batch.append({k: _csv_cell(k, v) for k, v in record.items()})
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
            if batch:
                yield batch

    def _parquet(self) -> Iterator[list[dict[str, Any]]]:
        import pyarrow.parquet as pq

        with pq.ParquetFile(self.path) as parquet:
            for batch in parquet.iter_batches(batch_size=BATCH):
                yield batch.to_pylist()

    def _hf(self) -> Iterator[list[dict[str, Any]]]:
        import pyarrow as pa

        for file in self.data_files():
            with pa.memory_map(str(file)) as source:
                for batch in pa.ipc.open_stream(source):
                    for start in range(0, batch.num_rows, BATCH):
                        yield batch.slice(start, BATCH).to_pylist()
