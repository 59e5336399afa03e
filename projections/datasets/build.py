"""Build the training datasets as of a log position: replay, cut rows, split, write, manifest.

The split is a hash of the tree id, so a tree's rows never straddle train and validation
and a tree keeps its side in every later build. With the position pinned, the output
depends on nothing but the log prefix and the options (see the reproducibility test).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from uuid import UUID

import msgspec

from domain.errors import DomainError, ErrorCode
from domain.states import TreeState
from domain.tree import ConversationTree
from projections import log_reader
from projections.datasets.rows import KINDS, SFT_PATHS, BuildOptions, TreeRows
from projections.datasets.writer import SPLITS, copy_kind, sha256, write_kind

MANIFEST = "manifest.json"
FORMAT = "dataengine-datasets/1"


class DatasetOptionsError(DomainError):
    error_code = ErrorCode.VALIDATION_ERROR
    http_status = 422


def check_options(options: BuildOptions) -> None:
    unknown = sorted(set(options.kinds) - set(KINDS))
    if unknown or not options.kinds:
        raise DatasetOptionsError(f"unknown dataset kinds {unknown}; choose from {', '.join(KINDS)}")
    if not 0.0 <= options.val_fraction < 1.0:
        raise DatasetOptionsError(f"--val-fraction must be in [0, 1), not {options.val_fraction}")
    if options.sft_paths not in SFT_PATHS:
        raise DatasetOptionsError(f"--sft-paths must be one of {', '.join(SFT_PATHS)}")
    if options.top_k < 1:
        raise DatasetOptionsError("--top-k must be at least 1")


def split_of(tree_id: UUID, val_fraction: float) -> str:
    draw = int.from_bytes(hashlib.sha256(tree_id.bytes).digest()[:8], "big") / 2**64
    return "validation" if draw < val_fraction else "train"


def output_kinds(kinds: Iterable[str]) -> list[str]:
    """Folders written: the listwise ranking file comes with rm."""
    out = []
    for kind in KINDS:
        if kind in kinds:
            out.append(kind)
            if kind == "rm":
                out.append("rm_listwise")
    return out


@dataclass
class Collected:
    trees: int = 0
    rows: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)


def collect(trees: Iterable[ConversationTree], options: BuildOptions) -> Collected:
    kinds = output_kinds(options.kinds)
    result = Collected(rows={k: {s: [] for s in SPLITS} for k in kinds})
    for tree in trees:
        if tree.state is not TreeState.READY_FOR_EXPORT:
            continue
        if options.lang is not None and tree.root.lang != options.lang:
            continue
        result.trees += 1
        split = split_of(tree.id, options.val_fraction)
        rows = TreeRows(tree, options)
        pairs = list(rows.pairs()) if "rm" in kinds or "dpo" in kinds else []
        for kind in kinds:
            target = result.rows[kind][split]
            if kind in ("rm", "dpo"):
                target.extend(pairs)
            elif kind == "rm_listwise":
                target.extend(rows.listwise())
            else:
                target.extend(getattr(rows, kind)())
    return result


def _prepare(out: Path) -> None:
    """Refuse to clobber a folder we did not write; clear our earlier build."""
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST).exists():
            raise DatasetOptionsError(f"{out} is not empty and holds no {MANIFEST}; pick another --out")
        for kind in output_kinds(KINDS):
            shutil.rmtree(out / kind, ignore_errors=True)
        (out / MANIFEST).unlink()
    out.mkdir(parents=True, exist_ok=True)


def _audit_digest(folder: Path, position: int) -> dict[str, Any]:
    """The log's hash-chain digest at the build position: proof of which log was used."""
    from domain.digest import SCHEME
    from projections.digest import AUDIT_FILE, AuditStore, digest_at, open_log

    log, store = open_log(Path(folder) / log_reader.EVENTS_FILE), AuditStore(Path(folder) / AUDIT_FILE)
    try:
        return {"scheme": SCHEME, "position": position,
                "digest": digest_at(log, store, position).hex()}
    finally:
        store.conn.close()
        if log is not None:
            log.close()


def build(folder: Path, out: Path, options: BuildOptions, as_of: int | None = None,
          progress: Any = None) -> dict[str, Any]:
    """Build every requested kind into ``out``; returns the manifest (also written there)."""
    check_options(options)
    db = log_reader.events_db(folder)
    position = log_reader.resolve_position(db, as_of)
    # Emoji, label and ranking events change nothing a dataset row holds: skip decoding them.
    trees: Iterable[ConversationTree] = log_reader.iter_trees(db, position, content_only=True)
    if progress is not None:
        trees = progress(trees, total=log_reader.count_trees(db, position))
    collected = collect(trees, options)
    _prepare(out)
    files: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    for kind, splits in collected.rows.items():
        if kind == "dpo" and "rm" in collected.rows:
            written = copy_kind(out / "rm", out / kind)  # the same rows: the same bytes
        else:
            written = write_kind(out / kind, kind, splits)
        for path in written:
            files[path.relative_to(out).as_posix()] = sha256(path)
        counts[kind] = {s: len(splits[s]) for s in SPLITS}
    manifest = {
        "format": FORMAT, "log_position": position, "audit": _audit_digest(folder, position),
        "options": options.as_dict(),
        "ready_trees": collected.trees, "rows": counts, "files": dict(sorted(files.items())),
    }
    (out / MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n")
    return manifest
