"""Build the training datasets as of a log position: cut rows, split, write, manifest.

Rows come from one of two places, which give the same bytes:
- replay: every ready tree as of the position, replayed from the log with the slim replay
  (projections.datasets.replay) and cut by TreeRows;
- the training projection's pre-cut rows (projections.datasets.precut), when it stands
  exactly at the position and the options cut rows the way it does (kinds, language and
  split may still differ). Nothing in the output says which was used.

The split is a hash of the tree id, so a tree's rows never straddle train and validation
and a tree keeps its side in every later build. With the position pinned, the output
depends on nothing but the log prefix and the options (see the reproducibility test).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from domain.model.errors import DomainError, ErrorCode
from projections import log_reader
from projections.datasets import replay as slim
from projections.datasets.rows import (
    KINDS,
    LOCAL,
    ROW_KINDS,
    SFT_PATHS,
    SOURCE,
    BuildOptions,
    cut,
    split_draw,
)
from projections.datasets.writer import SPLITS, copy_kind, write_kind

MANIFEST = "manifest.json"
FORMAT = "dataengine-datasets/1"
SOURCES = ("auto", "replay", "projection")

# progress(desc, total) -> a bar with update(n) and close() (tqdm's interface)
Progress = Callable[[str, int], Any]


class DatasetOptionsError(DomainError):
    error_code = ErrorCode.VALIDATION_ERROR
    http_status = 422


def check_options(options: BuildOptions) -> None:
    unknown = sorted(set(options.kinds) - set(KINDS))
    if unknown or not options.kinds:
        raise DatasetOptionsError(
            f"unknown dataset kinds {unknown}; choose from {', '.join(KINDS)}"
        )
    if not 0.0 <= options.val_fraction < 1.0:
        raise DatasetOptionsError(f"--val-fraction must be in [0, 1), not {options.val_fraction}")
    if options.sft_paths not in SFT_PATHS:
        raise DatasetOptionsError(f"--sft-paths must be one of {', '.join(SFT_PATHS)}")
    if options.top_k < 1:
        raise DatasetOptionsError("--top-k must be at least 1")
    if options.sources is not None and (
        not options.sources or not all(s.strip() for s in options.sources)
    ):
        raise DatasetOptionsError(
            f"--sources needs source names (an import's --source, or {LOCAL}), "
            f"not {','.join(options.sources)!r}"
        )


def split_of(tree_id: UUID, val_fraction: float) -> str:
    return "validation" if split_draw(tree_id) < val_fraction else "train"


def output_kinds(dataset_kinds: Iterable[str]) -> list[str]:
    """Folders written: the listwise ranking file comes with rm."""
    out = []
    for dataset_kind in KINDS:
        if dataset_kind in dataset_kinds:
            out.append(dataset_kind)
            if dataset_kind == "rm":
                out.append("rm_listwise")
    return out


def row_kinds(dataset_kinds: Iterable[str]) -> tuple[str, ...]:
    """The row kinds (rows.ROW_KINDS) the output kinds are made of."""
    needed = {SOURCE[k] for k in output_kinds(dataset_kinds)}
    return tuple(k for k in ROW_KINDS if k in needed)


@dataclass
class Collected:
    """Per row kind and split: the JSON lines of each tree in tree-id order, and counts."""

    row_kinds: tuple[str, ...]
    trees: int = 0
    parts: dict[str, dict[str, list[bytes]]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.parts = {k: {s: [] for s in SPLITS} for k in self.row_kinds}
        self.counts = {k: {s: 0 for s in SPLITS} for k in self.row_kinds}

    def add(self, row_kind: str, split: str, count: int, lines: bytes) -> None:
        self.parts[row_kind][split].append(lines)
        self.counts[row_kind][split] += count


def collect(trees: Iterable[Any], options: BuildOptions) -> Collected:
    """Rows of ready trees (ConversationTree or slim), in the order given."""
    result = Collected(row_kinds(options.kinds))
    for tree in trees:
        if tree.state.value != slim.READY:
            continue
        if options.lang is not None and tree.root.lang != options.lang:
            continue
        if not options.takes(tree.origin):
            continue
        result.trees += 1
        split = split_of(tree.id, options.val_fraction)
        for row_kind, (count, lines) in cut(tree, options, result.row_kinds).items():
            result.add(row_kind, split, count, lines)
    return result


def replay_trees(
    db: log_reader.Location,
    position: int,
    lang: str | None = None,
    progress: Progress | None = None,
) -> Iterable[slim.RowTree]:
    """Ready trees as of the position, slim, in tree-id order (the primary-key index walk
    hands each tree's events over together, so memory stays at one tree)."""
    conn = log_reader.connect(db)  # SQLite or PostgreSQL
    bar = progress("replay", log_reader.count_trees(db, position)) if progress else None
    topics = slim.CONTENT_TOPICS
    try:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events"
            f" WHERE rowid <= ? AND topic IN ({','.join('?' * len(topics))})"
            " ORDER BY originator_id, originator_version",
            (position, *topics),
        )
        on_tree = bar.update if bar is not None else None
        yield from slim.ready_trees(rows, lang=lang, on_tree=on_tree)
    finally:
        conn.close()
        if bar is not None:
            bar.close()


def _check_out(out: Path) -> None:
    """Refuse to clobber a folder we did not write (before any work is done)."""
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise DatasetOptionsError(f"{out} is not empty and holds no {MANIFEST}; pick another --out")


def _prepare(out: Path) -> None:
    """Clear our earlier build."""
    _check_out(out)
    if out.exists() and any(out.iterdir()):
        for kind in output_kinds(KINDS):
            shutil.rmtree(out / kind, ignore_errors=True)
        (out / MANIFEST).unlink()
    out.mkdir(parents=True, exist_ok=True)


def _audit_digest(folder: Path, position: int) -> dict[str, Any]:
    """The log's hash-chain digest at the build position: proof of which log was used."""
    from projections.audit.chain import SCHEME
    from projections.audit.record import AUDIT_FILE, AuditStore, digest_at, open_log

    log = open_log(log_reader.events_db(folder))
    store = AuditStore(Path(folder) / AUDIT_FILE)
    try:
        return {
            "scheme": SCHEME,
            "position": position,
            "digest": digest_at(log, store, position).hex(),
        }
    finally:
        store.conn.close()
        if log is not None:
            log.close()


class Manifest(dict[str, Any]):
    """The manifest as written, plus where the rows came from (not written: both sources
    give the same bytes)."""

    source: str = "replay"


def build(
    folder: Path,
    out: Path,
    options: BuildOptions,
    as_of: int | None = None,
    progress: Progress | None = None,
    source: str = "auto",
) -> Manifest:
    """Build every requested kind into ``out``; returns the manifest (also written there).

    source: "auto" takes the training projection's rows when it can, "replay" never,
    "projection" insists (an error when the projection cannot serve this build)."""
    from projections.datasets import precut

    check_options(options)
    if source not in SOURCES:
        raise DatasetOptionsError(f"--source must be one of {', '.join(SOURCES)}")
    db = log_reader.events_db(folder)
    position = log_reader.resolve_position(db, as_of)
    _check_out(out)
    collected = None
    if source != "replay":
        collected, why_not = precut.collect(folder, position, options, row_kinds(options.kinds))
        if collected is None and source == "projection":
            raise DatasetOptionsError(f"the training projection cannot serve this build: {why_not}")
    used = "projection" if collected is not None else "replay"
    if collected is None:
        collected = collect(replay_trees(db, position, options.lang, progress), options)
    written = _write(out, collected, options, progress)
    manifest = Manifest(
        {
            "format": FORMAT,
            "log_position": position,
            "audit": _audit_digest(folder, position),
            "options": options.as_dict(),
            "ready_trees": collected.trees,
            "rows": written["rows"],
            "files": written["files"],
        }
    )
    manifest.source = used
    text = msgspec.json.format(msgspec.json.encode(manifest), indent=2)
    (out / MANIFEST).write_bytes(text + b"\n")
    return manifest


def _write(
    out: Path, collected: Collected, options: BuildOptions, progress: Progress | None
) -> dict[str, Any]:
    """Write the kinds two at a time: parsing, compressing, hashing and file writes release
    the GIL, so a second core has work."""
    _prepare(out)
    kinds = output_kinds(options.kinds)
    bar = progress("write", len(kinds)) if progress else None
    digests: dict[Path, str] = {}

    def write(kind: str) -> dict[Path, str]:
        parts = collected.parts[SOURCE[kind]]
        written = write_kind(out / kind, kind, {s: parts[s] for s in SPLITS})
        if bar is not None:
            bar.update(1)
        return written

    copied = "dpo" in kinds and "rm" in kinds  # the same rows: the same bytes
    with ThreadPoolExecutor(max_workers=2) as pool:
        for written in pool.map(write, [k for k in kinds if not (copied and k == "dpo")]):
            digests.update(written)
    if copied:
        digests.update(copy_kind(out / "rm", out / "dpo", digests))
        if bar is not None:
            bar.update(1)
    files = {p.relative_to(out).as_posix(): d for p, d in digests.items()}
    if bar is not None:
        bar.close()
    counts = {kind: dict(collected.counts[SOURCE[kind]]) for kind in kinds}
    return {"rows": counts, "files": dict(sorted(files.items()))}
