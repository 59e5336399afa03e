"""Follows the notification log and keeps the read models current, exactly once.

Each batch of events is applied in one read-model transaction together with the new
tracking positions: either the batch and its position are both there, or neither is.
Catch-up reads large batches (one transaction per batch, not per event); live following
is a thread polling the log every few milliseconds when idle (or at once on ``wake``), and
``catch_up(position)`` gives a caller read-your-writes after a command.

Optional hooks of a projection make replay fast (declared, with defaults that do nothing,
on projections.base.Projection; handlers get the batch's cursor and the domain event):
- ``views``: True (or a mapping event class -> msgspec struct) hands its handlers views
  decoded straight from the stored JSON (projections.log) instead of domain events;
- ``begin_batch(cursor)`` / ``end_batch(cursor)`` / ``abort_batch()``: called around each
  batch, in projection order, so a projection can keep the batch's changes in memory
  (projections.writeback) and write them with a few executemany calls at its end (the
  batch is one transaction anyway). Such rows are stale to other projections until then,
  so handlers read only their own projection's tables; a projection whose handlers must
  read others' rows sets ``reads_others = True``, and before each of its handlers the
  runner calls ``flush(cursor)`` on the projections that override it.
- ``replay_indexes``: the names of the projection's indexes its handlers query; a rebuild
  creates its other indexes only once the tables are full.
- ``positions = True`` (with ``views``, whose structs declare ``position``): each view gets
  its event's log position; ``bind_log(log)``: the projection gets the log source it
  follows, to read events itself at a batch's end (projections.datasets.live).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from eventsourcing.utils import resolve_topic

from api.storage.space import disk_full
from api.storage.unreachable import store_unreachable
from projections import identity
from projections.base import Handler, Projection
from projections.log import LogSource, Row, event_view, views_through
from projections.store import ReadModel

log = logging.getLogger("dataengine.readmodel")

# Waits between tries while the disk is full: short first, so a freed disk is seen quickly.
SPACE_RETRY = (0.05, 2.0)


class ProjectionError(RuntimeError):
    """A handler failed; the batch was rolled back and following stopped (or, for a full
    disk, paused: the live thread tries the batch again until space returns)."""


def _positioned(decode: Callable[[Row], Any]) -> Callable[[Row], Any]:
    """A view decoder that also records the row's log position (a projection's own)."""

    def decoder(row: Row) -> Any:
        event = decode(row)
        event.position = row[0]
        return event

    return decoder


class ProjectionRunner:
    def __init__(
        self,
        log: LogSource,
        path: str | Path,
        projections: Sequence[Projection] | None = None,
        *,
        batch_size: int = 1000,
        poll_interval: float = 0.01,
        bulk: bool = False,
        observe: Callable[[Sequence[Row] | None], None] = lambda rows: None,
    ):
        self.log = log
        # each batch read, before it is applied (None: rows another runner applied, unseen)
        self.observe = observe  # the server's aggregate cache, evicting what others moved
        # a read model that is not this log's (restored backup, another store, corrupt) is
        # set aside and rebuilt; the reason stays for /health (projections.identity)
        self.set_aside = None if bulk else identity.ensure_own(Path(path), log)
        self.readmodel = ReadModel(path, projections)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        # bulk (a rebuild into a scratch file): the whole run is one transaction, so no
        # batch pays a commit's writes; a failure loses all of it, and the file with it.
        self._bulk = bulk
        self._conn = self.readmodel.connect(bulk=bulk)
        self.readmodel.create(self._conn)
        self._deferred = self._defer_indexes() if bulk else []
        for projection in self.readmodel.projections:
            projection.bind_log(log)
        self._positions = self.readmodel.positions(self._conn)
        self._routes = self._route(self.readmodel.projections)
        self._readers = any(r[4] for route in self._routes.values() for r in route)
        # The common case (no projection ahead of the others, none reading others' rows):
        # topic -> ((decoder, (handler, ...)), ...), handlers grouped by the object they take.
        self._plain: dict[str, tuple[tuple[Callable[[Row], Any], tuple[Handler, ...]], ...]] = {}
        for topic, route in self._routes.items():
            groups: list[tuple[Callable[[Row], Any], list[Handler]]] = []
            for decode, _, handler, _, _ in route:
                if groups and groups[-1][0] is decode:
                    groups[-1][1].append(handler)
                else:
                    groups.append((decode, [handler]))
            self._plain[topic] = tuple((d, tuple(h)) for d, h in groups)
        self._batched = [p for p in self.readmodel.projections if p.overrides("end_batch")]
        self._flushable = [p for p in self._batched if p.overrides("flush")]
        self._names = [p.name for p in self.readmodel.projections]
        self._position = min(self._positions[n] for n in self._names) if self._names else 0
        self._lock = threading.Lock()  # one batch at a time
        self._cond = threading.Condition()
        self._stop, self._wake = threading.Event(), threading.Event()
        self.wake = self._wake.set  # a waiter's nudge: an idle runner reads the log now
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.waiting_for_space = False  # a full disk paused following; it resumes by itself

    def _route(
        self, projections: Sequence[Projection]
    ) -> dict[str, list[tuple[Callable[[Row], Any], str, Handler, bool, bool]]]:
        """topic -> [(decoder, projection name, handler, buffered, reader), ...] in
        projection order; ``reader``: flush the buffered changes before the handler."""
        routes: dict[str, list[tuple[Callable[[Row], Any], str, Handler, bool, bool]]] = {}
        decoders: dict[Any, Callable[[Row], Any]] = {}
        fast_views = hasattr(self.log, "view_decoder")
        full = self.log.decode  # one bound method, so neighbours share the decoded event
        for projection in projections:
            views = projection.views
            buffered = projection.overrides("end_batch")
            reader = projection.reads_others
            positioned = projection.positions
            for topic, handler in projection.handlers().items():
                decoder: Callable[[Row], Any] = full
                if views:
                    event_class = resolve_topic(topic)
                    narrow = views.get(event_class) if isinstance(views, Mapping) else None
                    if (topic, narrow) not in decoders:
                        decoders[topic, narrow] = (
                            self.log.view_decoder(event_class, narrow)  # type: ignore[attr-defined]
                            if fast_views
                            else views_through(full, narrow or event_view(event_class))
                        )
                    decoder = decoders[topic, narrow]
                if positioned:
                    decoder = _positioned(decoder)
                routes.setdefault(topic, []).append(
                    (decoder, projection.name, handler, buffered, reader)
                )
        return routes

    def _flush(self, cursor: Any) -> None:
        for projection in self._flushable:
            projection.flush(cursor)

    @property
    def position(self) -> int:
        """The log position every projection has reached."""
        return self._position

    # ------------------------------------------------------------------ catching up
    def run_once(
        self, *, until: int | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Apply what the log holds now (or up to ``until``); return the number of events."""
        done = 0
        while until is None or self._position < until:
            limit = min(self.batch_size, until - self._position) if until else self.batch_size
            with self._lock:
                rows = self.log.read(self._position, limit)
                if not rows:
                    break
                self.observe(rows)
                applied = self._apply(rows)
            done += applied
            if progress is not None and applied:
                progress(applied)
        if self._bulk:
            for statement in self._deferred:
                self._conn.execute(statement)
            self._deferred = []
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")
        return done

    def _defer_indexes(self) -> list[str]:
        """Drop the indexes no handler reads during a replay (those a projection does not
        name in ``replay_indexes``, when it names them); returns their CREATE statements.
        An index built once over the finished table costs less than one kept up row by
        row. Unique indexes stay: they are constraints."""
        deferred = []
        for projection in self.readmodel.projections:
            keep = projection.replay_indexes
            if keep is None:
                continue
            for statement in projection.ddl:
                words = statement.split()
                if words[:2] == ["CREATE", "INDEX"]:
                    name = words[5] if words[2:5] == ["IF", "NOT", "EXISTS"] else words[2]
                    if name not in keep:
                        self._conn.execute(f"DROP INDEX IF EXISTS {name}")
                        deferred.append(statement)
        return deferred

    def _apply(self, rows: Sequence[Row]) -> int:
        """Apply a batch; returns how many of its events were applied (another runner
        on the same file may have applied the others)."""
        conn, positions = self._conn, self._positions
        cursor = conn.cursor()
        if not conn.in_transaction:  # in bulk mode, the run's transaction may be open
            cursor.execute("BEGIN" if self._bulk else "BEGIN IMMEDIATE")
        if not self._bulk:
            rows = self._reconcile(cursor, rows)
            if not rows:
                cursor.execute("COMMIT")
                return 0
        lagging = any(positions[n] > self._position for n in self._names)
        last = rows[-1][0]
        try:
            for projection in self._batched:
                projection.begin_batch(cursor)
            if lagging or self._readers:
                self._dispatch(cursor, rows, lagging)
            else:
                plain = self._plain
                for row in rows:
                    groups = plain.get(row[3])
                    if groups is not None:
                        for decode, handlers in groups:
                            event = decode(row)
                            for handler in handlers:
                                handler(cursor, event)
            for projection in self._batched:
                projection.end_batch(cursor)
            identity.record(cursor, rows)
            cursor.executemany(
                "UPDATE tracking SET position = ? WHERE projection = ? AND position < ?",
                [(last, n, last) for n in self._names],
            )
            if not self._bulk:
                cursor.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:  # SQLite may have rolled back itself (SQLITE_FULL)
                cursor.execute("ROLLBACK")
            for projection in self._batched:
                projection.abort_batch()
            if self._bulk:  # earlier batches were rolled back too
                self._positions.update(self.readmodel.positions(conn))
                self._position = min((positions[n] for n in self._names), default=0)
            raise ProjectionError(
                f"projecting events {rows[0][0]}..{last} failed: {type(e).__name__}: {e}"
            ) from e
        for name in self._names:
            positions[name] = max(positions[name], last)
        with self._cond:
            self._position = last
            self._cond.notify_all()
        return len(rows)

    def _reconcile(self, cursor: Any, rows: Sequence[Row]) -> Sequence[Row]:
        """The rows of ``rows`` still to apply, under the file's write lock.

        Another runner on the same file (the server's, a CLI command's) may have applied
        batches since ours: then the tracking table is ahead of what this runner wrote,
        its projections' caches describe older tables and are dropped, and what the file
        already holds is skipped. Positions behind ours (a projection re-created by another
        version of its DDL) are read again from there: nothing of this batch is applied."""
        stored = dict(cursor.execute("SELECT projection, position FROM tracking").fetchall())
        current = {n: stored.get(n, 0) for n in self._names}
        positions = self._positions
        if all(current[n] == positions[n] for n in self._names):
            return rows
        for projection in self._batched:
            projection.abort_batch()
        before = self._position
        positions.update(current)
        with self._cond:
            self._position = min(current.values(), default=0)
            self._cond.notify_all()
        if self._position < before:
            return []
        if self._position > rows[-1][0]:
            self.observe(None)
        return [row for row in rows if row[0] > self._position]

    def _dispatch(self, cursor: Any, rows: Sequence[Row], lagging: bool) -> None:
        """The general case: skip what a projection already holds, flush before readers."""
        positions, routes = self._positions, self._routes
        pending = False  # buffered changes a reader has not seen
        for row in rows:
            route = routes.get(row[3])
            if route is None:
                continue
            decoded = None  # handlers next to each other that want the same decoding share it
            for decode, name, handler, buffered, reader in route:
                if lagging and positions[name] >= row[0]:
                    continue  # this projection already holds the event
                if decoded is not decode:
                    event, decoded = decode(row), decode
                if reader and pending:
                    self._flush(cursor)
                    pending = False
                if buffered:
                    pending = True
                handler(cursor, event)

    # ------------------------------------------------------------------ live following
    def start(self) -> ProjectionRunner:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._follow, name="projection-runner", daemon=True
            )
            self._thread.start()
        return self

    def _follow(self) -> None:
        retry = SPACE_RETRY[0]
        while not self._stop.is_set():
            self._wake.clear()  # set during this batch: the next wait returns at once
            try:
                applied = self.run_once()
            except BaseException as e:  # noqa: BLE001 - reported to whoever waits or stops
                self._failed(e)
                if not self.waiting_for_space:
                    return
                self._stop.wait(retry)
                retry = min(retry * 2, SPACE_RETRY[1])
                continue
            if self.waiting_for_space:
                log.warning("disk space is back: the read model follows the log again")
                self.error, self.waiting_for_space = None, False
            retry = SPACE_RETRY[0]
            if applied == 0:
                self._wake.wait(self.poll_interval)

    def _failed(self, error: BaseException) -> None:
        """A batch failed (rolled back, nothing applied). A full disk pauses following and
        the batch is tried again (the error stays for /health meanwhile); anything else
        stops it."""
        if disk_full(error) or store_unreachable(error):  # both pass: retried until they do
            if not self.waiting_for_space:
                what = "disk space" if disk_full(error) else "the event store"
                log.error("the read model waits for %s (retrying): %s", what, error)
            self.waiting_for_space = True
        self.error = error
        with self._cond:
            self._cond.notify_all()

    def catch_up(self, position: int | None, timeout: float = 5.0) -> bool:
        """Block until the read models include ``position``; False on timeout. None: nothing
        to wait for; ``catch_up(runner.log.head())`` waits for everything logged so far.

        Without a live thread the caller catches up itself.
        """
        if position is None:
            return True
        if self._thread is None:
            self.run_once(until=position)
            return self._position >= position
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._position < position:
                if self.error is not None:
                    raise ProjectionError(
                        "the projection runner stopped"
                        if not self.waiting_for_space
                        else "the read model waits for the event store"
                        if store_unreachable(self.error)
                        else "the read model waits for disk space"
                    ) from self.error
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise ProjectionError("the projection runner stopped") from error

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self._conn.close()

    def __enter__(self) -> ProjectionRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
