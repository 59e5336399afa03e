"""Group commit, independent of the database: concurrent saves share one commit.

The first writer to find no commit in progress becomes the committer and writes every
pending request at once; the next committer takes what queued meanwhile; a lone writer
commits at once. A store adapter supplies ``_commit(batch)``, which stores the batch
atomically, or, when that fails, each request on its own, so a failure (a version
conflict) fails only its own request and is never half-written. Rows are
(originator_id as 32 hex digits, version, topic, state): the same values on every store.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

Row = tuple[str, int, str, bytes]


class Pending:
    """One save waiting for a commit. wake is released when it is done, or when its
    thread is to commit the queue (lead): only those threads wake, never the others."""

    __slots__ = ("rows", "ids", "error", "lead", "wake")

    def __init__(self, rows: list[Row]):
        self.rows = rows
        self.ids: list[int] | None = None
        self.error: BaseException | None = None
        self.lead = False
        self.wake = threading.Lock()
        self.wake.acquire()


def stored_rows(stored_events: Sequence[StoredEvent]) -> list[Row]:
    return [
        (
            s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
            s.originator_version,
            s.topic,
            s.state,
        )
        for s in stored_events
    ]


class GroupCommit:
    """Mixin for an application recorder: ``insert_events`` through the shared queue."""

    max_batch = 512  # requests per commit

    def _init_group_commit(self) -> None:
        self._mutex = threading.Lock()
        self._queue: list[Pending] = []
        self._committing = False
        # commits and the requests they carried: requests / commits is the mean batch size
        self.stats = {"commits": 0, "requests": 0, "max_batch": 0}

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        request = Pending(stored_rows(stored_events))
        if not request.rows:
            return []
        with self._mutex:
            self._queue.append(request)
            request.lead = not self._committing
            self._committing = True
        if not request.lead:
            request.wake.acquire()  # until a committer stored it, or made this thread lead
        if request.lead:  # its request is first in the queue, so in the batch
            self._lead()
        if request.error is not None:
            raise request.error
        return request.ids

    def _lead(self) -> None:
        with self._mutex:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        successor = None
        stats = self.stats
        stats["commits"] += 1
        stats["requests"] += len(batch)
        stats["max_batch"] = max(stats["max_batch"], len(batch))
        try:
            self._commit(batch)
        finally:
            with self._mutex:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                else:
                    self._committing = False
            for item in batch:
                if item.ids is None and item.error is None:
                    item.error = RuntimeError("the commit was interrupted")
                if not item.lead:
                    item.wake.release()
            if successor is not None:
                successor.wake.release()

    def _commit(self, batch: list[Pending]) -> None:
        """Store the batch: set each item's ids, or its error (never raise)."""
        raise NotImplementedError
