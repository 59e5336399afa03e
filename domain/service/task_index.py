"""Which user holds a task, from the log: the task index's commands and reads.

Whatever command issues a task, its index entry is recorded in the same unit of work
(``_before_save``), so an ack or nack that names only the task finds its user without
asking a read model. Logs written before the index existed are indexed once when the
application is opened (``index_tasks``, idempotent: domain.service.indexes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from domain.model.catalogue import topics_of
from domain.model.errors import TaskNotFoundError
from domain.model.task_index import TaskIndex, task_index_id_for
from domain.model.user import User
from domain.service.base import ServiceBase
from domain.service.indexes import backfill, entry
from domain.service.unit_of_work import UnitOfWork

# TaskIssued under its stored topic and its class's current one (a log may hold either).
_ISSUED = topics_of(User.TaskIssued)


def new_tasks(uow: UnitOfWork) -> list[tuple[UUID, UUID, datetime]]:
    """(task id, user id, when) of every task the unit of work is about to issue."""
    return [
        (event.task_id, aggregate.id, event.timestamp)
        for aggregate in list(uow.loaded.values())
        if isinstance(aggregate, User) and aggregate.pending_events
        for event in aggregate.pending_events
        if isinstance(event, User.TaskIssued)
    ]


class TaskIndexCommands(ServiceBase):
    def _before_save(self, uow: UnitOfWork) -> list[Any]:
        added = super()._before_save(uow)
        for task_id, user_id, when in new_tasks(uow):
            # task ids are random (uuid4): no other task claims the entry. Stamped as the
            # TaskIssued it indexes (same transaction, the application's clock). Saved, it
            # stays in the aggregate cache, so this process's ack finds it unread.
            recorded = TaskIndex.record(task_id=task_id, user_id=user_id, timestamp=when)
            uow.add(recorded)
            added.append(recorded)
        return added

    def task_owner(self, task_id: UUID) -> UUID:
        """The user a task was handed to, from the log (TaskNotFoundError when none): a
        task this process issued is in the cache; another process's is read once."""
        found = entry(self, TaskIndex, task_index_id_for(task_id))
        if found is not None:
            return found.user_id
        raise TaskNotFoundError(f"task {task_id} not found")

    def index_tasks(self, batch_size: int = 500) -> int:
        """Index the tasks issued before the index existed; returns how many it indexed (0
        on a log that needs nothing, after one read of the first TaskIssued)."""
        return backfill(
            self,
            topics=_ISSUED,
            key=self._issued,
            indexed=lambda key: entry(self, TaskIndex, task_index_id_for(key[0])) is not None,
            index=_index,
            batch_size=batch_size,
        )

    def _issued(self, notification: Any) -> tuple[UUID, UUID]:
        event = self.mapper.to_domain_event(notification)
        assert isinstance(event, User.TaskIssued), notification.topic
        return event.task_id, UUID(str(event.originator_id))


def _index(uow: UnitOfWork, issued: list[tuple[UUID, UUID]]) -> None:
    for task_id, user_id in issued:
        if uow.find(TaskIndex, task_index_id_for(task_id)) is None:
            uow.add(TaskIndex.record(task_id=task_id, user_id=user_id))
