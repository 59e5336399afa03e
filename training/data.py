"""Finding and loading the rows a training kind needs from a dataset folder the builder wrote.

`--data` is either the build root (it holds manifest.json and one folder per kind) or one
kind folder. Rows load split by split from the kind's HF folder (`<kind>/hf/<split>`,
memory-mapped, no cache written) when present, else from its parquet files. Everything is
checked before training starts, so a bad folder fails fast and leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.errors import TrainingDataError

MANIFEST = "manifest.json"
DATASET_MANIFEST = "dataset_manifest.json"  # the copy inside a run folder
FORMATS = ("dataengine-datasets/1",)  # manifest formats this trainer reads
CACHE = ".data"  # in the run's partial folder: the rows it trains on, and datasets' caches

# The builder's folder for each training kind; rm and dpo rows are the same pairs, so either
# folder serves both (a build with only --kinds rm still trains dpo).
KIND_FOLDERS: dict[str, tuple[str, ...]] = {
    "sft": ("sft",),
    "rm": ("rm", "dpo"),
    "dpo": ("dpo", "rm"),
    "kto": ("kto",),
    "rlhf": ("rl",),
}
COLUMNS: dict[str, tuple[str, ...]] = {
    "sft": ("messages",),
    "rm": ("prompt", "chosen", "rejected"),
    "dpo": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "rlhf": ("prompt",),
}


@dataclass
class TrainingData:
    kind: str
    folder: Path  # the kind folder rows came from
    manifest_path: Path | None
    manifest: dict[str, Any] | None
    train: Any  # datasets.Dataset
    validation: Any  # datasets.Dataset, possibly empty

    def provenance(self) -> dict[str, Any]:
        """What metrics.json records about the data: enough to rebuild it from the log."""
        m = self.manifest or {}
        audit = m.get("audit") or {}
        return {
            "path": str(self.folder),
            "manifest": str(self.manifest_path) if self.manifest_path else None,
            "log_position": m.get("log_position"),
            "digest": audit.get("digest"),
            "digest_scheme": audit.get("scheme"),
            "rows": {"train": len(self.train), "validation": len(self.validation)},
        }

    def relocate(self, folder: Path, write: bool = True) -> None:
        """Train from a copy in the run's own folder: the trainers' map/filter caches
        (cache-*.arrow) land beside the rows they read, and must never land in the build,
        where they break `load_dataset(<build>/<kind>)`. One process writes (``write``),
        every process reads."""
        from accelerate import PartialState
        from datasets import Dataset

        names = [n for n in ("train", "validation") if len(getattr(self, n))]  # an empty
        # split stays in memory: datasets 5.2 cannot load an empty saved split back
        if write:
            shutil.rmtree(folder, ignore_errors=True)
            for name in names:
                getattr(self, name).save_to_disk(str(folder / name))
        PartialState().wait_for_everyone()
        for name in names:
            setattr(self, name, Dataset.load_from_disk(str(folder / name)))

    def write_manifest(self, out: Path) -> None:
        """Copy the build's manifest byte for byte; a bare kind folder gets a stand-in that
        still pins the files by sha256."""
        target = out / DATASET_MANIFEST
        if self.manifest_path is not None:
            shutil.copyfile(self.manifest_path, target)
            return
        from projections.datasets.writer import sha256

        files = {
            p.relative_to(self.folder).as_posix(): sha256(p)
            for p in sorted(self.folder.rglob("*"))
            if p.is_file()
        }
        stand_in = {
            "format": None,
            "note": f"no {MANIFEST} found beside {self.folder}",
            "log_position": None,
            "files": files,
        }
        target.write_text(json.dumps(stand_in, indent=2) + "\n")


def _has_rows(folder: Path) -> bool:
    return (folder / "hf").is_dir() or (folder / "train.parquet").is_file()


def locate(data: Path, kind: str) -> tuple[Path, Path | None]:
    """The kind folder to read and the manifest that describes it (None for a bare folder)."""
    data = Path(data)
    if not data.is_dir():
        raise TrainingDataError(f"dataset folder {data} does not exist")
    if (data / MANIFEST).is_file():
        for name in KIND_FOLDERS[kind]:
            if _has_rows(data / name):
                return data / name, data / MANIFEST
        built = sorted(p.name for p in data.iterdir() if p.is_dir() and _has_rows(p))
        raise TrainingDataError(
            f"{data} holds no {' or '.join(KIND_FOLDERS[kind])} dataset for `train {kind}` "
            f"(it has: {', '.join(built) or 'none'}); build it with `dataengine datasets build`"
        )
    if _has_rows(data):
        parent = data.parent / MANIFEST
        return data, (parent if parent.is_file() else None)
    raise TrainingDataError(
        f"{data} is neither a dataset build (no {MANIFEST}) nor a kind folder "
        "(no hf/ or train.parquet)"
    )


def _empty_hf_split(path: Path) -> bool:
    """save_to_disk writes an empty split with no data file, and datasets 5.2's load_from_disk
    then fails on it (IndexError in concat_tables): such a split is read from parquet."""
    state = path / "state.json"
    return state.is_file() and not json.loads(state.read_text()).get("_data_files")


def _read_splits(folder: Path) -> dict[str, Any]:
    from datasets import Dataset

    splits: dict[str, Any] = {}
    for split in ("train", "validation"):
        hf, parquet = folder / "hf" / split, folder / f"{split}.parquet"
        if hf.is_dir() and not _empty_hf_split(hf):
            splits[split] = Dataset.load_from_disk(str(hf))  # memory-mapped, no cache written
        elif parquet.is_file():
            import pyarrow.parquet as pq
            from datasets.table import InMemoryTable

            splits[split] = Dataset(InMemoryTable(pq.read_table(parquet)))
    if "train" not in splits:
        if (folder / "hf" / "train").is_dir():
            raise TrainingDataError(f"the train split of {folder} is empty: nothing to train on")
        raise TrainingDataError(f"{folder} has no train split")
    if "validation" not in splits:
        splits["validation"] = splits["train"].select([])
    return splits


def verify(folder: Path, manifest_path: Path) -> dict[str, Any]:
    """The manifest, after checking its format and that every file of the kind folder it
    lists is there with the sha256 it lists: a changed file refuses to train."""
    from projections.datasets.writer import sha256

    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as e:
        raise TrainingDataError(f"{manifest_path} is not JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise TrainingDataError(
            f"{manifest_path} has format {found!r}; this trainer reads {', '.join(FORMATS)} "
            "(rebuild with `dataengine datasets build`)"
        )
    files = manifest.get("files")
    try:
        relative = folder.relative_to(manifest_path.parent)
    except ValueError:
        relative = folder.resolve().relative_to(manifest_path.parent.resolve())
    prefix = relative.as_posix() + "/"
    listed = {k: v for k, v in (files or {}).items() if k.startswith(prefix)}
    if not listed:
        raise TrainingDataError(f"{manifest_path} lists no files of {folder}: cannot verify it")
    root = manifest_path.parent
    for name, digest in sorted(listed.items()):
        path = root / name
        if not path.is_file():
            raise TrainingDataError(f"{path} is listed in {manifest_path} but missing")
        if sha256(path) != digest:
            raise TrainingDataError(
                f"{path} does not match its sha256 in {manifest_path}: the build was changed "
                "after it was written; rebuild it with `dataengine datasets build`"
            )
    return manifest


def load(data: Path, kind: str) -> TrainingData:
    if kind not in KIND_FOLDERS:
        raise TrainingDataError(
            f"unknown training kind {kind!r}; choose from {', '.join(KIND_FOLDERS)}"
        )
    folder, manifest_path = locate(Path(data), kind)
    manifest = verify(folder, manifest_path) if manifest_path else None
    splits = _read_splits(folder)
    train = splits["train"]
    missing = [c for c in COLUMNS[kind] if c not in train.column_names]
    if missing:
        raise TrainingDataError(
            f"{folder} lacks the column(s) {', '.join(missing)} that `train {kind}` needs "
            f"(it has {', '.join(train.column_names)})"
        )
    if len(train) == 0:
        raise TrainingDataError(f"the train split of {folder} is empty: nothing to train on")
    return TrainingData(kind, folder, manifest_path, manifest, train, splits["validation"])
