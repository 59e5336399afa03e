"""The training projection: the dataset rows of every ready tree, kept current from the log.

Tables: ``dataset_trees`` (one row per ready_for_export tree: prompt language, its split
draw, the position where it became ready and the position of its last change) and
``dataset_rows`` (per tree and row kind, the count and the rows as JSON lines, cut by
TreeRows with the default options: best sft path, no synthetic messages). One value per
tree and kind rather than per row: a tree's rows always change together, and a build at
the projection's position with default row options just concatenates the values in tree
order (projections.datasets.precut), byte for byte what a replay writes.

Design. A row depends on the whole tree (a path, the ranks of siblings), and handlers see
one event at a time, so the handlers only mark trees dirty: a tree that becomes ready, or
a ready tree that gets an event changing something a row holds (replies, reviews, ranks,
deletions, edits, state; which trees are ready is kept in memory). At the end of each
batch (the runner's ``end_batch``) the dirty trees are loaded from the log, one indexed
query per 500 trees, each as of the last version the batch saw, replayed with the slim
replay the builder uses (projections.datasets.replay), and their rows replaced. A tree
that is no longer ready loses its rows. So the tables are a function of the log prefix
the batch ends at, however the log was cut into batches: live following (small batches)
and a rebuild (large ones) give the same tables, and since the rows and the tracking
position commit together, each batch counts exactly once.

Two small runner hooks serve this (projections.runner): ``bind_log`` hands the projection
the log source it follows, and ``positions = True`` gives its event views their log
position (the ready and changed positions are exact, not the batch's end).

Cost: events of trees that are not ready cost one set lookup; each tree is replayed when it
becomes ready (a rebuild replays every ready tree once per batch it changes in).
``schema_version`` hashes the code that shapes the rows, so a change to it re-projects
the tables instead of serving rows cut by older code.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from domain.model.tree import ConversationTree
from projections import log_reader
from projections.base import Projection, handles
from projections.datasets import replay as slim
from projections.datasets import rows as rows_module
from projections.datasets.rows import BuildOptions, cut, split_draw

NAME = "datasets"
_CHUNK = 500  # tree ids per IN (...) query


def _code_digest() -> str:
    """The source of the modules that decide a row's bytes."""
    sources = (Path(str(m.__file__)).read_bytes() for m in (rows_module, slim))
    return hashlib.sha256(b"".join(sources)).hexdigest()[:16]


class _Touched(msgspec.Struct):
    originator_id: str = ""
    originator_version: int = 0
    position: int = 0


class _Started(_Touched):
    state: str = ""


class _Moved(_Touched):
    to_state: str = ""


# The events that set a tree's state (its start, every kind of state change) decide which
# trees are ready; every other event a row depends on matters only to a tree that is ready.
_STARTED, _HALTED = ConversationTree.TreeStarted, ConversationTree.TreeHalted
_MOVES = tuple(cls for cls in slim.STATE_EVENTS if cls not in (_STARTED, _HALTED))
_CHANGES = tuple(cls for cls in slim.APPLIED if cls not in slim.STATE_EVENTS)
_VIEWS: dict[type, type] = {cls: _Touched for cls in _CHANGES}
_VIEWS.update({cls: _Moved for cls in _MOVES})
_VIEWS.update({_STARTED: _Started, _HALTED: _Touched})


class TrainingProjection(Projection):
    name = NAME
    views = _VIEWS
    positions = True
    tables = ("dataset_trees", "dataset_rows")
    ddl = (
        """CREATE TABLE IF NOT EXISTS dataset_trees (
            tree_id TEXT PRIMARY KEY, lang TEXT NOT NULL, split_draw REAL NOT NULL,
            ready_position INTEGER NOT NULL, changed_position INTEGER NOT NULL) WITHOUT ROWID""",
        # Rows of one kind of one tree as JSON lines: rowid table, the values are large.
        """CREATE TABLE IF NOT EXISTS dataset_rows (
            row_kind TEXT NOT NULL, tree_id TEXT NOT NULL, count INTEGER NOT NULL,
            lines BLOB NOT NULL)""",
        "CREATE UNIQUE INDEX IF NOT EXISTS dataset_rows_kind ON dataset_rows (row_kind, tree_id)",
        "CREATE INDEX IF NOT EXISTS dataset_rows_tree ON dataset_rows (tree_id)",
        # Covers the training status's per-kind counts (precut.status, read by the
        # dashboard): a scan of this index rather than of the rows with their large lines
        # (~8.6 ms -> ~1.3 ms at 1,000 trees).
        "CREATE INDEX IF NOT EXISTS dataset_rows_counts ON dataset_rows (row_kind, tree_id, count)",
        "CREATE INDEX IF NOT EXISTS dataset_trees_ready ON dataset_trees (ready_position)",
    )
    schema_version = _code_digest()
    # Rebuild balance (projections.rebuild): ready trees are read back and cut once more,
    # about twice the trees projection's time on a crowd-grown log.
    replay_cost = 2.0
    options = BuildOptions()

    def __init__(self) -> None:
        self._log: Any = None
        self._ready: set[str] | None = None  # ready trees, committed and this batch's
        self._conn: sqlite3.Connection | None = None
        self._dirty: dict[str, tuple[int, int]] = {}  # tree -> (version, position) last seen
        self._became_ready: dict[str, int] = {}

    def bind_log(self, log: Any) -> None:
        self._log = log

    # ------------------------------------------------------------------ the batch
    def begin_batch(self, cursor: sqlite3.Cursor) -> None:
        if self._ready is None or cursor.connection is not self._conn:
            self._conn = cursor.connection
            self._ready = {t for (t,) in cursor.execute("SELECT tree_id FROM dataset_trees")}
        self._dirty.clear()
        self._became_ready.clear()

    def abort_batch(self) -> None:
        self._ready = None  # reloaded from the rolled-back tables
        self._dirty.clear()
        self._became_ready.clear()

    def end_batch(self, cursor: sqlite3.Cursor) -> None:
        if not self._dirty:
            return
        dirty, became = self._dirty, self._became_ready
        versions = {tree_id: version for tree_id, (version, _) in dirty.items()}
        gone: list[tuple[str]] = []
        trees: list[tuple[str, str, float, int, int]] = []
        rows: list[tuple[str, str, int, bytes]] = []
        for tree in self._load(versions):
            tree_id = str(tree.id)
            if tree.state.value != slim.READY:
                gone.append((tree_id,))
                self._ready.discard(tree_id)  # type: ignore[union-attr]
                continue
            position = dirty[tree_id][1]
            trees.append(
                (tree_id, tree.root.lang, split_draw(tree.id), became.get(tree_id, 0), position)
            )
            rows.extend(
                (row_kind, tree_id, count, lines)
                for row_kind, (count, lines) in cut(tree, self.options).items()
            )
        replaced = gone + [(t[0],) for t in trees]
        cursor.executemany("DELETE FROM dataset_rows WHERE tree_id = ?", replaced)
        cursor.executemany("DELETE FROM dataset_trees WHERE tree_id = ?", gone)
        # A tree already ready keeps the position it became ready at.
        cursor.executemany(
            "INSERT INTO dataset_trees VALUES (?, ?, ?, ?, ?) ON CONFLICT (tree_id) DO UPDATE SET"
            " lang = excluded.lang, changed_position = excluded.changed_position,"
            " ready_position = CASE WHEN excluded.ready_position > 0"
            " THEN excluded.ready_position ELSE ready_position END",
            trees,
        )
        cursor.executemany("INSERT INTO dataset_rows VALUES (?, ?, ?, ?)", rows)

    # ------------------------------------------------------------------ handlers
    @handles(*_CHANGES)
    def on_change(self, c: sqlite3.Cursor, e: Any) -> None:
        if e.originator_id in self._ready:  # type: ignore[operator]
            self._dirty[e.originator_id] = (e.originator_version, e.position)

    @handles(_STARTED)
    def on_started(self, c: sqlite3.Cursor, e: Any) -> None:
        self._move(e, e.state)  # an imported tree may start out ready

    @handles(*_MOVES)
    def on_moved(self, c: sqlite3.Cursor, e: Any) -> None:
        self._move(e, e.to_state)

    @handles(_HALTED)
    def on_halted(self, c: sqlite3.Cursor, e: Any) -> None:
        self._move(e, None)

    def _move(self, e: Any, to_state: str | None) -> None:
        tree_id, ready = e.originator_id, self._ready
        assert ready is not None
        if to_state == slim.READY:
            if tree_id not in ready:
                ready.add(tree_id)
                self._became_ready[tree_id] = e.position
        elif tree_id in ready:
            ready.discard(tree_id)  # its rows go at the batch's end
            self._became_ready.pop(tree_id, None)
        else:
            return
        self._dirty[tree_id] = (e.originator_version, e.position)

    # ------------------------------------------------------------------ loading trees
    def _load(self, versions: dict[str, int]) -> Iterator[slim.RowTree]:
        """The trees as of the given versions, from the log the runner follows."""
        path = getattr(self._log, "path", None)
        if path is not None:
            yield from _load_sqlite(path, versions)
        elif hasattr(self._log, "app"):
            yield from _load_recorder(self._log.app, versions)
        else:
            raise TypeError(f"{NAME} projection cannot load trees from {self._log!r}")


def _load_sqlite(db: Any, versions: dict[str, int]) -> Iterator[slim.RowTree]:
    """Batched: one indexed query per chunk of trees, rows of a tree together (from the
    events table of either store: ``db`` is a log location)."""
    conn = log_reader.connect(db)
    topics = slim.CONTENT_TOPICS
    try:
        ids = sorted(UUID(t).hex for t in versions)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            cursor = conn.execute(
                "SELECT originator_id, originator_version, topic, state FROM stored_events"
                f" WHERE originator_id IN ({','.join('?' * len(chunk))})"
                f" AND topic IN ({','.join('?' * len(topics))})"
                " ORDER BY originator_id, originator_version",
                (*chunk, *topics),
            )
            yield from _group(cursor, versions)
    finally:
        conn.close()


def _load_recorder(app: Any, versions: dict[str, int]) -> Iterator[slim.RowTree]:
    """Through the application's recorder (any persistence module; unit tests)."""
    mapper = app.mapper
    for tree_id in sorted(versions):
        stored = app.recorder.select_events(UUID(tree_id), lte=versions[tree_id])
        events = []
        for s in stored:
            if s.topic in slim.APPLY:
                data = s.state
                if mapper.cipher:
                    data = mapper.cipher.decrypt(data)
                if mapper.compressor:
                    data = mapper.compressor.decompress(data)
                events.append((s.topic, data))
        yield slim.replay(UUID(tree_id), events)


def _group(rows: Any, versions: dict[str, int]) -> Iterator[slim.RowTree]:
    current, limit = None, 0
    events: list[tuple[str, bytes]] = []
    for originator_id, version, topic, state in rows:
        if originator_id != current:
            if events:
                yield slim.replay(slim.tree_uuid(current), events)
            current, events = originator_id, []
            limit = versions[str(slim.tree_uuid(originator_id))]
        if version <= limit:
            events.append((topic, state))
    if events:
        yield slim.replay(slim.tree_uuid(current), events)
