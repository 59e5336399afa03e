"""Open-Assistant import: export files (trees or flat messages, plain or gzipped) into the log.

Each tree becomes a ConversationTree built by ``ConversationTree.import_tree`` from the
events the domain already has. The tree id is the root message id from the file, so a
tree that is already in the log is skipped: importing a file twice adds nothing. Trees
are saved in batches, one transaction each, because one commit per tree would spend most
of an import waiting for fsync; a tree the domain refuses is reported, not saved, and does
not hold back the rest of its batch.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from domain.model.errors import DomainError, InvalidMessageError, TreeNotFoundError
from domain.model.states import TreeState
from domain.model.tree import ConversationTree
from domain.service.application import DataEngine, UnitOfWork

_decoder = msgspec.json.Decoder()

# --state choices of the CLI: trees go to people for ranking instead of keeping their ranks.
STATE_CHOICES = {"ranking": TreeState.RANKING, "backlog": TreeState.BACKLOG_RANKING}


@dataclass
class ImportReport:
    imported: int = 0
    skipped: int = 0  # already in the log
    failed: list[tuple[str, str]] = field(default_factory=list)  # (tree id, error)
    position: int | None = None  # log position of the last saved batch


def _open(path: Path) -> Any:
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_export_file(path: str | Path) -> Iterator[dict[str, Any]]:
    """Export trees from a file of trees or of flat messages (OA's file conventions)."""
    messages: dict[str, list[dict[str, Any]]] = {}
    with _open(Path(path)) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = _decoder.decode(line)
            except msgspec.DecodeError as e:
                raise InvalidMessageError(f"{path}:{number}: not JSON: {e}") from None
            if not isinstance(item, dict):
                raise InvalidMessageError(f"{path}:{number}: not a JSON object")
            if "prompt" in item and "message_tree_id" in item:
                yield item
            elif "message_id" in item:
                tree_id = item.get("message_tree_id") or item["message_id"]
                messages.setdefault(tree_id, []).append(item)
            else:
                raise InvalidMessageError(f"{path}:{number}: neither a tree nor a message")
    for tree_id, rows in messages.items():
        yield nest_messages(tree_id, rows)


def nest_messages(tree_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A flat message list (any order) as an export tree; replies keep the rows' order."""
    nodes = {row["message_id"]: {**row, "replies": []} for row in rows}
    root = None
    for node in nodes.values():
        parent_id = node.get("parent_id")
        if parent_id is None:
            root = node
        elif parent_id in nodes:
            nodes[parent_id]["replies"].append(node)
        else:
            raise InvalidMessageError(f"tree {tree_id}: message {node['message_id']} has no parent")
    if root is None or root["message_id"] != tree_id:
        raise InvalidMessageError(f"tree {tree_id}: no root message")
    for node in nodes.values():
        node["replies"].sort(key=lambda n: (n.get("rank") is None, n.get("rank") or 0))
    state = root.pop("tree_state", None)
    root.pop("message_tree_id", None)
    return {"message_tree_id": tree_id, "tree_state": state, "prompt": root}


def import_trees(
    app: DataEngine,
    trees: Iterable[dict[str, Any]],
    *,
    state: TreeState | str | None = None,
    origin: str | None = None,
    batch_size: int = 200,
    progress: Any = None,
) -> ImportReport:
    report = ImportReport()
    batch: list[dict[str, Any]] = []
    for export in trees:
        batch.append(export)
        if len(batch) >= batch_size:
            _import_batch(app, batch, state, origin, report)
            if progress is not None:
                progress.update(len(batch))
            batch = []
    if batch:
        _import_batch(app, batch, state, origin, report)
        if progress is not None:
            progress.update(len(batch))
    return report


def _tree_id(export: dict[str, Any]) -> UUID | None:
    try:
        return UUID(str(export["prompt"]["message_id"]))
    except (KeyError, TypeError, ValueError):
        return None


def _import_batch(
    app: DataEngine,
    batch: list[dict[str, Any]],
    state: TreeState | str | None,
    origin: str | None,
    report: ImportReport,
) -> None:
    ids = []
    for export in batch:
        tree_id = _tree_id(export)
        if tree_id is None:
            report.failed.append((str(export.get("message_tree_id")), "no root message id"))
        else:
            ids.append(tree_id)

    def command(uow: UnitOfWork) -> tuple[int, int, list[tuple[str, str]]]:
        imported, skipped, failed = 0, 0, []
        seen: set[UUID] = set()
        for export in batch:
            tree_id = _tree_id(export)
            if tree_id is None:
                continue
            if tree_id in seen:
                skipped += 1
                continue
            seen.add(tree_id)
            try:
                uow.get(ConversationTree, tree_id)
                skipped += 1
                continue
            except TreeNotFoundError:
                pass
            try:
                tree = ConversationTree.import_tree(
                    export, config=app.config, state=state, origin=origin
                )
            except DomainError as e:
                failed.append((str(tree_id), f"{e.message} (error_code {int(e.error_code)})"))
                continue
            uow.add(tree)
            imported += 1
        return imported, skipped, failed

    (imported, skipped, failed), position = app.run(tuple(ids), command)
    report.imported += imported
    report.skipped += skipped
    report.failed.extend(failed)
    if position is not None:
        report.position = position
