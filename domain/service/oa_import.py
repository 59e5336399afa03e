"""Open-Assistant import: export files (trees or flat messages, plain or gzipped) into the log.

Each tree becomes a ConversationTree built by ``ConversationTree.import_tree`` from the
events the domain already has. The tree id is the root message id from the file, so a
tree that is already in the log is skipped: importing a file twice adds nothing. Trees
are saved in batches, one transaction each, because one commit per tree would spend most
of an import waiting for fsync; a tree the domain refuses (or one holding a message id
another tree holds) is reported, not saved, and does not hold back the rest of its batch.
``ImportCommands.import_batch`` is the command; ``import_trees`` feeds it a stream.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from domain.model.actor import Actor
from domain.model.errors import DomainError, InvalidMessageError, MessageAlreadyExistsError
from domain.model.message_index import MessageIndex, index_id_for
from domain.model.states import TreeState
from domain.model.tree import ConversationTree
from domain.model.tree_seed import SeedTree, record_seed
from domain.service.message_index import MessageIndexCommands
from domain.service.unit_of_work import UnitOfWork

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


class ImportCommands(MessageIndexCommands):
    def import_batch(
        self,
        batch: list[dict[str, Any]],
        *,
        state: TreeState | str | None = None,
        origin: str | None = None,
    ) -> ImportReport:
        """Import export trees in one transaction; trees already in the log are skipped."""
        report = ImportReport()
        ids = []
        for export in batch:
            tree_id = _tree_id(export)
            if tree_id is None:
                report.failed.append((str(export.get("message_tree_id")), "no root message id"))
            else:
                ids.append(tree_id)

        def command(uow: UnitOfWork) -> ImportReport:
            done = ImportReport()
            for export in batch:
                tree_id = _tree_id(export)
                if tree_id is not None:
                    self._import_one(uow, export, tree_id, state, origin, done)
            return done

        done, report.position = self.run(tuple(ids), command)
        report.imported, report.skipped = done.imported, done.skipped
        report.failed.extend(done.failed)
        return report

    def import_seed_batch(self, batch: list[SeedTree], *, actor: Actor) -> ImportReport:
        """Record OA seed trees (domain.model.tree_seed) in one transaction as ``actor``'s
        messages; trees already in the log are skipped."""

        def command(uow: UnitOfWork) -> ImportReport:
            done = ImportReport()
            for seed in batch:
                if uow.find(ConversationTree, seed.id) is not None:
                    done.skipped += 1
                    continue
                try:
                    tree = record_seed(ConversationTree, seed, actor, self.config)
                    if uow.attempt > 0:
                        _check_unclaimed(uow, tree)
                except DomainError as e:
                    done.failed.append(
                        (str(seed.id), f"{e.message} (error_code {int(e.error_code)})")
                    )
                    continue
                uow.add(tree)
                done.imported += 1
            return done

        done, position = self.run(tuple(seed.id for seed in batch), command)
        done.position = position
        return done

    def _import_one(
        self,
        uow: UnitOfWork,
        export: dict[str, Any],
        tree_id: UUID,
        state: TreeState | str | None,
        origin: str | None,
        done: ImportReport,
    ) -> None:
        if uow.find(ConversationTree, tree_id) is not None:
            done.skipped += 1  # in the log already, or earlier in this batch
            return
        try:
            tree = ConversationTree.import_tree(
                export, config=self.config, state=state, origin=origin
            )
            if uow.attempt > 0:  # a conflict on the message index: find the tree that caused it
                _check_unclaimed(uow, tree)
        except DomainError as e:
            done.failed.append((str(tree_id), f"{e.message} (error_code {int(e.error_code)})"))
            return
        uow.add(tree)
        done.imported += 1


def _check_unclaimed(uow: UnitOfWork, tree: ConversationTree) -> None:
    for message_id in tree.messages:
        entry: Any = uow.find(MessageIndex, index_id_for(message_id))
        if entry is None:
            entry = next(
                (
                    t
                    for t in uow.new
                    if isinstance(t, ConversationTree) and message_id in t.messages
                ),
                None,
            )
        if entry is not None:
            raise MessageAlreadyExistsError(f"message {message_id} already exists in another tree")


def import_trees(
    app: ImportCommands,
    trees: Iterable[dict[str, Any]],
    *,
    state: TreeState | str | None = None,
    origin: str | None = None,
    batch_size: int = 200,
    progress: Any = None,
) -> ImportReport:
    """Import a stream of export trees in batches (``ImportCommands.import_batch``)."""
    report = ImportReport()
    batch: list[dict[str, Any]] = []
    for export in trees:
        batch.append(export)
        if len(batch) >= batch_size:
            _add(report, app.import_batch(batch, state=state, origin=origin))
            if progress is not None:
                progress.update(len(batch))
            batch = []
    if batch:
        _add(report, app.import_batch(batch, state=state, origin=origin))
        if progress is not None:
            progress.update(len(batch))
    return report


def _add(report: ImportReport, batch: ImportReport) -> None:
    report.imported += batch.imported
    report.skipped += batch.skipped
    report.failed.extend(batch.failed)
    if batch.position is not None:
        report.position = batch.position


def _tree_id(export: dict[str, Any]) -> UUID | None:
    try:
        return UUID(str(export["prompt"]["message_id"]))
    except (KeyError, TypeError, ValueError):
        return None
