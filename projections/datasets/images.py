"""Datasets for vision-language models: the same rows, in TRL's vision layout, with images.

``dataengine datasets build --images`` takes the ready trees as of a log position (the
replay the text build uses, projections.datasets.build) and cuts the same rows
(projections.datasets.rows), then writes each message's content as parts (one
``{"type": "image"}`` per image the message carries, then ``{"type": "text", "text":
...}``) and gives every row an ``images`` column: the images of its turns in the order the
chat template places them, empty for a text-only row. That is the layout TRL's SFT and
DPO trainers take for image-text-to-text models (rm/kto/rl rows get the same columns).

Per kind the folder holds JSON lines per split (images named by their blob path) and an HF
datasets folder per split whose ``images`` column is an ``Image`` sequence with the bytes
embedded, so a training run needs no blob store. ``manifest.json`` (the format
training.data reads) pins every file by sha256 and lists each image's sha256 and blob
path; an image whose blob is missing or altered stops the build before anything is
written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from api.storage.blobs import BlobStore, blob_store
from projections import log_reader
from projections.datasets.build import _check_out, check_options, replay_trees
from projections.datasets.rows import SOURCE, BuildOptions, TreeRows, split_draw
from projections.datasets.writer import sha256

FORMAT = "dataengine-datasets/1"
MANIFEST = "manifest.json"
KINDS = ("sft", "rm", "dpo", "kto", "rl")  # rm_listwise has no vision trainer


def _blob_path(digest: str) -> str:
    return f"blobs/sha256/{digest[:2]}/{digest}"


def vision_row(rows: TreeRows, row: dict[str, Any]) -> dict[str, Any]:
    """The row with parts content and its ``images`` (sha256, in placement order)."""
    images: list[str] = []

    def turn(t: dict[str, str]) -> dict[str, Any]:
        shas = [getattr(i, "sha256", i) for i in getattr(rows.source(t), "images", ())]
        images.extend(shas)
        parts = [{"type": "image", "text": None} for _ in shas]
        return {"role": t["role"], "content": [*parts, {"type": "text", "text": t["content"]}]}

    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            out[key] = [turn(t) for t in value]
        elif isinstance(value, list) and value and isinstance(value[0], list):
            out[key] = [[turn(t) for t in chat] for chat in value]
        else:
            out[key] = value
    out["images"] = images
    return out


def tree_rows(tree: Any, options: BuildOptions, kinds: Iterable[str]) -> dict[str, list[dict]]:
    rows = TreeRows(tree, options)
    found: dict[str, list[dict]] = {}
    for kind in kinds:
        produced = getattr(rows, "pairs" if SOURCE[kind] == "pairs" else kind)()
        found[kind] = [vision_row(rows, r) for r in produced]
    return found


def collect(
    trees: Iterable[Any], options: BuildOptions
) -> tuple[int, dict[str, dict[str, list[dict]]]]:
    """Ready trees -> (trees, kind -> split -> rows), trees in the order given."""
    kinds = [k for k in KINDS if k in options.kinds]
    out: dict[str, dict[str, list[dict]]] = {k: {"train": [], "validation": []} for k in kinds}
    count = 0
    for tree in trees:
        count += 1
        split = "validation" if split_draw(tree.id) < options.val_fraction else "train"
        for kind, rows in tree_rows(tree, options, kinds).items():
            out[kind][split].extend(rows)
    return count, out


def _check_blobs(blobs: BlobStore, digests: set[str]) -> None:
    bad = {d: blobs.check(d) for d in sorted(digests)}
    bad = {d: v for d, v in bad.items() if v != "ok"}
    if bad:
        listed = ", ".join(f"{d[:12]}… {v}" for d, v in bad.items())
        raise ValueError(f"{len(bad)} image(s) cannot be read from the blob store: {listed}")


def _write_split(folder: Path, split: str, rows: list[dict], blobs: BlobStore) -> None:
    from datasets import Dataset, Image, Sequence

    with open(folder / f"{split}.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps({**row, "images": [_blob_path(d) for d in row["images"]]}) + "\n")
    if not rows:
        return  # datasets cannot load an empty saved split back; training.data handles it
    embedded = [
        {**row, "images": [{"bytes": blobs.read(d), "path": None} for d in row["images"]]}
        for row in rows
    ]
    table = Dataset.from_list(embedded).cast_column("images", Sequence(Image()))
    table.save_to_disk(str(folder / "hf" / split))


def build_images(
    folder: Path,
    out: Path,
    options: BuildOptions,
    as_of: int | None = None,
    progress: Callable[[str, int], Any] | None = None,
) -> dict[str, Any]:
    """Build the vision-language datasets into ``out``; returns the manifest written."""
    check_options(options)
    db = log_reader.events_db(folder)
    position = log_reader.resolve_position(db, as_of)
    _check_out(out)
    trees, collected = collect(replay_trees(db, position, options.lang, progress), options)
    blobs = blob_store(folder)
    digests = {
        d
        for splits in collected.values()
        for rs in splits.values()
        for r in rs
        for d in r["images"]
    }
    _check_blobs(blobs, digests)
    if out.exists():
        for kind in KINDS:
            shutil.rmtree(out / kind, ignore_errors=True)
        (out / MANIFEST).unlink(missing_ok=True)
    for kind, splits in collected.items():
        (out / kind / "hf").mkdir(parents=True, exist_ok=True)
        for split, rows in splits.items():
            _write_split(out / kind, split, rows, blobs)
    files = {
        p.relative_to(out).as_posix(): sha256(p)
        for kind in collected
        for p in sorted((out / kind).rglob("*"))
        if p.is_file()
    }
    manifest = {
        "format": FORMAT,
        "vision": True,
        "log_position": position,
        "ready_trees": trees,
        "options": options.as_dict(),
        "rows": {k: {s: len(r) for s, r in v.items()} for k, v in collected.items()},
        "images": {d: _blob_path(d) for d in sorted(digests)},
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
