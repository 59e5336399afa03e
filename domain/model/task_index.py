"""The task index: which user a task was handed to, recorded in the log itself.

One small aggregate per task id (eventsourcing's index pattern, as the message index),
created in the same transaction as the user's TaskIssued. An acknowledgement that names
only the task (OA's ack/nack without a user header) finds the task's user here, from the
log, so it never waits for a read model.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.model.index_entry import created, derived_id


def task_index_id_for(task_id: UUID) -> UUID:
    return derived_id("/task-index/", task_id)  # uuid5(NAMESPACE_URL, f"/task-index/{task_id}")


class TaskIndex(Aggregate):
    # one event, never another: a cached copy is current (domain.service.indexes.entry)
    written_once = True

    task_id: UUID
    user_id: UUID

    class TaskIndexed(Aggregate.Created):
        task_id: UUID
        user_id: UUID

        def apply(self, index: TaskIndex) -> None:
            index.task_id = self.task_id
            index.user_id = self.user_id

    @classmethod
    def record(
        cls, *, task_id: UUID, user_id: UUID, timestamp: datetime | None = None
    ) -> TaskIndex:
        """The entry for ``task_id``; ``timestamp``: the indexed event's (now when None)."""
        return created(
            cls,
            cls.TaskIndexed,
            task_index_id_for(task_id),
            timestamp,
            task_id=task_id,
            user_id=user_id,
        )
