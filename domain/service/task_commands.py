"""Commands on a user's tasks: issue, acknowledge, skip, expire."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from domain.model.actor import Actor
from domain.model.message import SKIP_LABELING, SKIP_RANKING, SKIP_REPLY
from domain.model.task_types import LABEL_TASKS, RANKING_TASKS, REPLY_TASKS, TaskType
from domain.model.tree import ConversationTree
from domain.model.user import Task, User
from domain.service.task_index import TaskIndexCommands
from domain.service.unit_of_work import UnitOfWork

_SKIP_EMOJI = {
    **{t: SKIP_REPLY for t in REPLY_TASKS},
    **{t: SKIP_LABELING for t in LABEL_TASKS},
    **{t: SKIP_RANKING for t in RANKING_TASKS},
}


class TaskCommands(TaskIndexCommands):
    def issue_task(
        self,
        *,
        user_id: UUID,
        task_type: TaskType | str,
        tree_id: UUID | None = None,
        message_id: UUID | None = None,
        lang: str = "en",
        payload: dict[str, Any] | None = None,
    ) -> Task:
        """Record a task handed to a user. Writes only the user, never the tree."""

        def command(uow: UnitOfWork) -> Task:
            user = uow.get(User, user_id)
            # random, not derived from the user: a task id must not be guessable by another
            # client (the id recorded in the event is what a retry or replay reads back)
            task_id = uuid4()
            return user.issue_task(
                task_id=task_id,
                task_type=TaskType(task_type).value,
                tree_id=tree_id,
                message_id=message_id,
                lang=lang,
                payload=dict(payload or {}),
                now=self.now(),
                config=self.config,
            )

        return self.run((user_id,), command)[0]

    def ack_task(self, *, user_id: UUID, task_id: UUID, frontend_message_id: str) -> int | None:
        return self.run(
            (user_id,),
            lambda uow: uow.get(User, user_id).acknowledge_task(
                task_id=task_id, frontend_message_id=frontend_message_id, now=self.now()
            ),
        )[1]

    def nack_task(self, *, user_id: UUID, task_id: UUID, reason: str | None = None) -> int | None:
        """Skip a task: the user no longer sees its target; reply skips feed auto-moderation."""
        # The task's tree (fixed when it was issued) says which locks to take; read from the
        # cached user, not from a deep copy of it (its tasks' payloads made that cost more
        # than the skip itself).
        tree_id = self.run((user_id,), lambda uow: uow.get(User, user_id).task(task_id).tree_id)[0]

        def command(uow: UnitOfWork) -> None:
            user = uow.get(User, user_id)
            task = user.skip_task(task_id=task_id, reason=reason, now=self.now())
            emoji = _SKIP_EMOJI.get(TaskType(task.type))
            if emoji and task.tree_id is not None and task.message_id is not None:
                tree = uow.get(ConversationTree, task.tree_id)
                tree.record_skip(
                    message_id=task.message_id,
                    emoji=emoji,
                    actor=Actor(user_id, user.client_id),
                    config=self.config,
                )

        lock_ids = (user_id,) if tree_id is None else (user_id, tree_id)
        return self.run(lock_ids, command)[1]

    def expire_tasks(self, *, user_id: UUID) -> list[UUID]:
        return self.run((user_id,), lambda uow: uow.get(User, user_id).expire_tasks(self.now()))[0]

    def task_of(self, user_id: UUID, task_id: UUID) -> Task:
        """A user's task, to read (UserNotFoundError / TaskNotFoundError when missing).
        No copy: the fields of a task set when it was issued never change."""
        return self.run((user_id,), lambda uow: uow.get(User, user_id).task(task_id))[0]

    def task_by_frontend_id(self, user_id: UUID, frontend_message_id: str) -> Task:
        """The task a front end acknowledged under its own id."""
        return self.run(
            (user_id,), lambda uow: uow.get(User, user_id).task_by_frontend_id(frontend_message_id)
        )[0]
