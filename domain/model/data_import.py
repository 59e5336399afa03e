"""The DataImport aggregate: where imported conversation trees came from, per source name.

`dataengine import data` turns rows of a user's file (prompts, chat messages, preference
pairs, completions) into ordinary ConversationTrees. The trees carry the source name as
their origin; this aggregate keeps the rest of the provenance as events: each file (its
sha256, name, format and how its columns were shaped) and, batch by batch, which tree each
row of the file became, with the row's system turn when it had one (a tree has no place
for it). That is what an export needs to write the rows back as they came in.

One aggregate per source name (the id is derived from the name), and one format per
source, so a source always exports in one shape. A file whose rows are all recorded is
complete: importing it again records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.model.errors import InvalidMessageError

NAMESPACE = uuid5(NAMESPACE_URL, "dataengine/import-data")


def source_id(source: str) -> UUID:
    return uuid5(NAMESPACE, f"source/{source}")


@dataclass
class ImportedFile:
    sha256: str
    name: str
    format: str
    split: str | None
    shape: dict[str, str]  # column names and forms, as the file had them
    rows: int  # rows to import (after --limit and skipped bad rows)
    row_index: list[int] = field(default_factory=list)  # the file row of each tree
    tree_ids: list[UUID] = field(default_factory=list)
    systems: dict[int, str] = field(default_factory=dict)  # file row -> system turn

    @property
    def complete(self) -> bool:
        return len(self.tree_ids) >= self.rows


class DataImport(Aggregate):
    class Started(Aggregate.Created):
        source: str
        format: str

        def apply(self, record: DataImport) -> None:
            record.source = self.source
            record.format = self.format
            record.files = {}

    class FileAdded(Aggregate.Event):
        file_sha256: str
        file_name: str
        split: str | None
        shape: dict[str, str]
        rows: int

        def apply(self, record: DataImport) -> None:
            record.files[self.file_sha256] = ImportedFile(
                self.file_sha256, self.file_name, record.format, self.split, self.shape, self.rows
            )

    class RowsImported(Aggregate.Event):
        """rows[i] of the file became tree_ids[i]; systems: file row -> its system turn."""

        file_sha256: str
        rows: list[int]
        tree_ids: list[UUID]
        systems: dict[str, str]

        def apply(self, record: DataImport) -> None:
            file = record.files[self.file_sha256]
            file.row_index.extend(self.rows)
            file.tree_ids.extend(self.tree_ids)
            file.systems.update({int(k): v for k, v in self.systems.items()})

    if TYPE_CHECKING:  # set by the events; not constructor arguments
        source: str
        format: str
        files: dict[str, ImportedFile]

    @classmethod
    def start(cls, source: str, format: str) -> DataImport:
        if not source or len(source) > 128 or any(c.isspace() for c in source):
            raise InvalidMessageError(
                f"a source name is 1..128 characters without whitespace, not {source!r}"
            )
        return cls._create(cls.Started, id=source_id(source), source=source, format=format)

    def add_file(
        self, sha256: str, name: str, split: str | None, shape: dict[str, str], rows: int
    ) -> None:
        if sha256 not in self.files:
            self.trigger_event(
                self.FileAdded,
                file_sha256=sha256,
                file_name=name,
                split=split,
                shape=dict(shape),
                rows=rows,
            )

    def record_rows(
        self, sha256: str, rows: list[int], tree_ids: list[UUID], systems: dict[int, str]
    ) -> None:
        if rows:
            self.trigger_event(
                self.RowsImported,
                file_sha256=sha256,
                rows=list(rows),
                tree_ids=list(tree_ids),
                systems={str(k): v for k, v in systems.items()},
            )
