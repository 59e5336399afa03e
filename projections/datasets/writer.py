"""Writing dataset splits: JSONL, parquet, an HF datasets folder when `datasets` is installed.

Every byte is a function of the JSONL bytes: the rows are encoded once (fixed key order),
and parquet and HF tables are parsed back from those bytes by Arrow's JSON reader
against fixed schemas (never inferred, so an empty split has the same columns). Both
build paths (replay and the training projection's pre-cut rows) hand the writer the
same bytes, so they write the same files. No timestamps anywhere; the HF folder's
fingerprint is derived from the data instead of left to chance.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SPLITS = ("train", "validation")
_BLOCK = 4 << 20  # JSON reader blocks: split across threads, each must hold whole lines


def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    chat = pa.list_(message)
    pair = pa.schema(
        [("prompt", chat), ("chosen", chat), ("rejected", chat), ("margin", pa.float64())]
    )
    return {
        "sft": pa.schema([("messages", chat)]),
        "rm": pair,
        "dpo": pair,
        "rm_listwise": pa.schema(
            [("prompt", chat), ("completions", pa.list_(chat)), ("ranks", pa.list_(pa.int64()))]
        ),
        "kto": pa.schema([("prompt", chat), ("completion", chat), ("label", pa.bool_())]),
        "rl": pa.schema([("prompt", chat)]),
    }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def table(jsonl: Path, schema: Any) -> Any:
    """The Arrow table of a JSON lines file, typed by the schema (one chunk per column)."""
    import pyarrow as pa
    import pyarrow.json as pj

    size = jsonl.stat().st_size
    if size == 0:
        return schema.empty_table()
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    with pa.memory_map(str(jsonl)) as source:  # the page cache, no copy into Python
        try:
            parsed = pj.read_json(
                source, read_options=pj.ReadOptions(block_size=_BLOCK), parse_options=parse
            )
        except pa.ArrowInvalid:  # a line longer than a block: read it as one block
            source.seek(0)
            parsed = pj.read_json(
                source,
                parse_options=parse,
                read_options=pj.ReadOptions(block_size=size + 1, use_threads=False),
            )
    return parsed.combine_chunks()


def write_kind(
    folder: Path, dataset_kind: str, splits: dict[str, bytes | Sequence[bytes]], hf: bool = True
) -> dict[Path, str]:
    """Write one dataset kind's splits (sft, rm, rm_listwise, ...) from their JSON lines
    (bytes, or parts to concatenate); returns the files written with their sha256."""
    import pyarrow.parquet as pq

    schema = _schemas()[dataset_kind]
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[Path, str] = {}
    tables = {}
    for split in SPLITS:
        lines = splits.get(split, b"")
        parts = [lines] if isinstance(lines, bytes) else lines
        jsonl = folder / f"{split}.jsonl"
        digest = hashlib.sha256()
        with open(jsonl, "wb") as f:
            for part in parts:
                f.write(part)
                digest.update(part)
        written[jsonl] = digest.hexdigest()
        tables[split] = table(jsonl, schema)
        parquet = folder / f"{split}.parquet"
        pq.write_table(tables[split], parquet, compression="zstd")
        written[parquet] = sha256(parquet)
    if hf:
        fingerprints = {s: written[folder / f"{s}.jsonl"][:16] for s in SPLITS}
        for path in _write_hf(folder / "hf", tables, schema, fingerprints):
            written[path] = sha256(path)
    return written


def copy_kind(source: Path, folder: Path, digests: dict[Path, str]) -> dict[Path, str]:
    """A kind whose rows equal another's (dpo and rm): copy its files, whose sha256
    (``digests``, as write_kind returned them) the copies share."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for path in sorted(source.rglob("*")):
        if path.is_file():
            target = folder / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            written[target] = digests[path]
    return written


class _Bars:
    """HF progress bars are one process-wide switch: off while any thread saves, and the
    last writer out restores it (the build shows its own progress)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.writers = 0
        self.restore = False

    @contextmanager
    def off(self, hf: Any) -> Iterator[None]:
        with self.lock:
            if self.writers == 0:
                self.restore = not hf.are_progress_bars_disabled()
                hf.disable_progress_bars()
            self.writers += 1
        try:
            yield
        finally:
            with self.lock:
                self.writers -= 1
                if self.writers == 0 and self.restore:
                    hf.enable_progress_bars()


_BARS = _Bars()


def _write_hf(
    folder: Path, tables: dict[str, Any], schema: Any, fingerprints: dict[str, str]
) -> list[Path]:
    try:
        import datasets as hf
        from datasets import Dataset, DatasetDict, DatasetInfo, Features, NamedSplit
        from datasets.table import InMemoryTable
    except ImportError:
        return []
    features = Features.from_arrow_schema(schema)
    # From the Arrow tables as they are: no per-row encoding, and a fingerprint taken from
    # the data, so the folder is as reproducible as the rest.
    data = DatasetDict(
        {
            split: Dataset(
                InMemoryTable(tables[split]),
                info=DatasetInfo(features=features.copy()),
                split=NamedSplit(split),
                fingerprint=fingerprints[split],
            )
            for split in SPLITS
        }
    )
    # An empty split left to its default is saved as zero shards, which load_from_disk
    # cannot read back: give it one (empty) shard.
    shards = {split: 1 for split in SPLITS if tables[split].num_rows == 0}
    with _BARS.off(hf):
        data.save_to_disk(str(folder), num_shards=shards)
    return sorted(p for p in folder.rglob("*") if p.is_file())
