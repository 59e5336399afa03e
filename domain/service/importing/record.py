"""`import data`: check a whole file, then record its rows as trees, in batches.

Two passes over the file. The first reads every row (up to --limit) into a Conversation,
so a malformed row stops the import before anything is recorded (or, with skip_bad, is
counted and left out); it also counts identical rows, whose trees are told apart by
their occurrence. The second pass converts the rows again and records them, a batch per
transaction: the trees (``ConversationTree.import_tree``, skipping those already in the
log) and, on the source's DataImport record, which tree each file row became. A file
whose rows are all recorded adds nothing when imported again; an import cut short
resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.model.data_import import DataImport, source_id
from domain.model.errors import DomainError
from domain.model.states import TreeState
from domain.model.tree import ConversationTree
from domain.service.application import DataEngine, UnitOfWork
from domain.service.importing.formats import (
    FORMATS,
    Conversation,
    RowError,
    detect,
    read_row,
    shape_of,
)
from domain.service.importing.readers import DataFile
from domain.service.importing.trees import STATES, export_tree, tree_id_for

# UnitOfWork.get's type variable names the core aggregates only.
_RECORD: Any = DataImport

Progress = Callable[[int], Any]  # called with the number of rows just done


@dataclass(frozen=True)
class ImportOptions:
    format: str = "auto"
    source: str | None = None  # default: the file's name without suffixes
    state: str | None = None  # default: the format's first state (trees.STATES)
    lang: str = "en"
    limit: int | None = None
    skip_bad: bool = False
    model_name: str | None = None
    batch_size: int = 500


@dataclass
class Plan:
    """What the checking pass found: the file's format and shape and which rows go in."""

    format: str
    shape: dict[str, str]
    source: str
    state: TreeState
    sha256: str
    rows: int = 0  # rows read (up to the limit)
    bad: dict[int, str] = field(default_factory=dict)  # row -> problem (skip_bad)
    form: str | None = None

    @property
    def good(self) -> int:
        return self.rows - len(self.bad)


@dataclass
class ImportReport:
    plan: Plan
    imported: int = 0  # trees added
    present: int = 0  # rows whose tree was already in the log
    position: int | None = None  # log position of the last batch saved


def _state(fmt: str, state: str | None) -> TreeState:
    allowed = STATES[fmt]
    if state is None:
        return allowed[0]
    try:
        chosen = TreeState(state)
    except ValueError:
        chosen = None
    if chosen not in allowed:
        names = ", ".join(s.value for s in allowed)
        raise RowError(f"{fmt} can be imported into the states {names}, not {state!r}")
    return chosen


def _limited(data: DataFile, limit: int | None) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, row in enumerate(data.rows()):
        if limit is not None and index >= limit:
            return
        yield index, row


def plan_import(data: DataFile, options: ImportOptions, progress: Progress | None = None) -> Plan:
    """The checking pass: every row read, the first bad one refused (unless skip_bad)."""
    columns = data.columns()
    if options.format != "auto" and options.format not in FORMATS:
        raise RowError(f"--format is auto or one of {', '.join(FORMATS)}, not {options.format!r}")
    fmt = detect(columns) if options.format == "auto" else options.format
    plan = Plan(
        format=fmt,
        shape=shape_of(fmt, columns),
        source=options.source or data.path.name.split(".")[0],
        state=_state(fmt, options.state),
        sha256=data.sha256(),
    )
    for index, row in _limited(data, options.limit):
        plan.rows += 1
        try:
            conversation = read_row(fmt, plan.shape, index, row)
            if plan.form is None:
                plan.form = conversation.form
            elif conversation.form != plan.form:
                raise RowError(
                    f"row {index}: {conversation.form} where earlier rows are {plan.form}"
                )
        except RowError as e:
            if not options.skip_bad:
                raise
            plan.bad[index] = e.message
        if progress is not None and plan.rows % 1000 == 0:
            progress(1000)
    if progress is not None:
        progress(plan.rows % 1000)
    if plan.form is not None:
        plan.shape = {**plan.shape, "form": plan.form}
    if plan.good == 0:
        raise RowError(f"{data.path.name}: no rows to import")
    return plan


def record_import(
    app: DataEngine,
    data: DataFile,
    plan: Plan,
    options: ImportOptions,
    progress: Progress | None = None,
) -> ImportReport:
    """The recording pass; run plan_import first (it refuses what this would half-record)."""
    recorder = _Recorder(app, data, plan, options)
    done = recorder.recorded_rows()
    seen: dict[str, int] = {}
    batch: list[tuple[int, UUID, Conversation]] = []
    for index, row in _limited(data, options.limit):
        if index in plan.bad:
            continue
        conversation = read_row(plan.format, plan.shape, index, row)
        digest = conversation.digest()
        occurrence = seen[digest] = seen.get(digest, -1) + 1
        if index in done:
            recorder.report.present += 1
            continue
        batch.append((index, tree_id_for(plan.source, digest, occurrence), conversation))
        if len(batch) >= options.batch_size:
            recorder.record(batch)
            if progress is not None:
                progress(len(batch))
            batch = []
    if batch:
        recorder.record(batch)
        if progress is not None:
            progress(len(batch))
    return recorder.report


class _Recorder:
    """Records batches of rows. A tree of this source exists exactly when the source's
    record lists it (both are saved in one transaction, and the tree id names the source),
    so the record tells which trees are present without a lookup per tree."""

    def __init__(self, app: DataEngine, data: DataFile, plan: Plan, options: ImportOptions):
        self.app, self.data, self.plan, self.options = app, data, plan, options
        self.report = ImportReport(plan)
        self.record_id = source_id(plan.source)
        self.known: set[UUID] = set()
        self.known_version: int | None = None

    def recorded_rows(self) -> set[int]:
        try:
            record: DataImport = self.app.repository.get(self.record_id)
        except AggregateNotFoundError:  # nothing from this source yet
            return set()
        if not isinstance(record, DataImport):
            raise RowError(f"source name {self.plan.source!r} cannot be used")
        if record.format != self.plan.format:
            raise RowError(
                f"source {self.plan.source!r} holds {record.format}; import "
                f"{self.plan.format} under another --source"
            )
        file = record.files.get(self.plan.sha256)
        return set(file.row_index) if file else set()

    def _present(self, record: DataImport) -> set[UUID]:
        if record.version != self.known_version:  # first batch, or another writer's rows
            self.known = {t for f in record.files.values() for t in f.tree_ids}
            self.known_version = record.version
        return self.known

    def record(self, batch: list[tuple[int, UUID, Conversation]]) -> None:
        plan, options = self.plan, self.options
        added: list[UUID] = []
        saved: list[DataImport] = []

        def command(uow: UnitOfWork) -> tuple[int, int]:
            added.clear()
            saved.clear()
            try:
                record: DataImport = uow.get(_RECORD, self.record_id)
                present = self._present(record)
            except DomainError:
                record, present = DataImport.start(plan.source, plan.format), set()
                uow.add(record)
            record.add_file(
                plan.sha256, self.data.path.name, self.data.split, plan.shape, plan.good
            )
            for _, tree_id, conversation in batch:
                if tree_id in present:
                    continue
                export = export_tree(
                    conversation,
                    tree_id,
                    state=plan.state,
                    lang=options.lang,
                    origin=plan.source,
                    model_name=options.model_name,
                    ranked=plan.format == "pairs",
                )
                tree = ConversationTree.import_tree(
                    export, config=self.app.config, state=plan.state
                )
                uow.add(tree)
                added.append(tree_id)
            systems = {i: c.system for i, _, c in batch if c.system is not None}
            rows, ids = [i for i, _, _ in batch], [t for _, t, _ in batch]
            record.record_rows(plan.sha256, rows, ids, systems)
            saved.append(record)
            return len(added), len(batch) - len(added)

        lock_ids = (self.record_id, *(t for _, t, _ in batch))
        (imported, present), position = self.app.run(lock_ids, command)
        self.known.update(t for _, t, _ in batch)
        self.known_version = saved[0].version
        self.report.imported += imported
        self.report.present += present
        if position is not None:
            self.report.position = position
