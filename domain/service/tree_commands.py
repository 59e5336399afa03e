"""Commands that add to a tree: prompts, replies, labels and rankings.

A task-based command checks the user's task, applies the fact to the tree and marks the
task done; both aggregates are saved in one transaction, so a task is never done
without its fact, nor a fact recorded twice for one task. A new message's entry in the
message index is saved in the same transaction (domain.service.message_index).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from uuid import UUID

from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.errors import InvalidMessageError, MessageAlreadyExistsError
from domain.model.images import ImageRef
from domain.model.message import Role
from domain.model.task_types import (
    LABEL_TASKS,
    PROMPT_TASKS,
    RANKING_TASKS,
    REPLY_ROLE,
    REPLY_TASKS,
    TaskType,
)
from domain.model.tree import ConversationTree
from domain.model.user import Task, User
from domain.service.message_index import MessageIndexCommands
from domain.service.refusals import check_free_label, check_same_labels, check_same_ranking
from domain.service.unit_of_work import Outcome, UnitOfWork, message_id_for


def ids(*found: UUID | None) -> tuple[UUID, ...]:
    """The lock ids of a command: the aggregates it may touch."""
    return tuple(i for i in found if i is not None)


def task_for(
    uow: UnitOfWork, now: datetime, actor: Actor, task_id: UUID | None, types: Iterable[TaskType]
) -> tuple[User | None, Task | None]:
    """The acting user and the task being answered (None, None for free work)."""
    if actor.user_id is None:
        return None, None
    if task_id is None:
        # Free work (no task) is still refused to a disabled user; actors that are not
        # registered users (imports, pre-labelling models) have no account to disable.
        found = uow.find(User, actor.user_id)
        if found is not None:
            found.check_enabled()
        return None, None
    user = uow.get(User, actor.user_id)
    user.check_enabled()
    task = user.task(task_id)
    if task.done:
        return user, task  # a retry: the caller answers with the earlier result
    user.check_can_complete(task, frozenset(types), now)
    return user, task


def _check_target(task: Task | None, expected: UUID) -> None:
    if task is not None and task.message_id is not None and task.message_id != expected:
        raise InvalidMessageError(
            f"task {task.id} is about message {task.message_id}, not {expected}"
        )


def _attach(
    tree: ConversationTree,
    message_id: UUID,
    images: Sequence[ImageRef],
    actor: Actor,
    config: TreeConfig,
) -> None:
    """A new prompter message's images, recorded right after it (one transaction)."""
    if images:
        limit = config.max_images_per_message
        tree.attach_images(message_id=message_id, images=images, actor=actor, limit=limit)


class TreeCommands(MessageIndexCommands):
    def create_prompt(
        self,
        *,
        actor: Actor,
        text: str,
        lang: str = "en",
        frontend_message_id: str | None = None,
        task_id: UUID | None = None,
        message_id: UUID | None = None,
        synthetic: bool = False,
        model_name: str | None = None,
        origin: str | None = None,
        goal_tree_size: int | None = None,
        images: Sequence[ImageRef] = (),
    ) -> Outcome:
        """``images``: stored uploads the prompt carries (ImagesAttached, same transaction)."""
        tree_id = message_id or message_id_for(actor.client_id, frontend_message_id)
        config = self.config

        def command(uow: UnitOfWork) -> UUID:
            now = self.now()
            user, task = task_for(uow, now, actor, task_id, PROMPT_TASKS)
            if task is not None and task.done:
                if task.result_id != tree_id:
                    raise MessageAlreadyExistsError(
                        f"task {task.id} was answered with another message"
                    )
                return tree_id
            existing = uow.find(ConversationTree, tree_id)
            if existing is not None:
                if existing.root.user_id == actor.user_id and existing.root.text == text:
                    return tree_id  # the same request again
                raise MessageAlreadyExistsError(f"message {tree_id} already exists")
            digest = user.check_not_duplicate_text(text, now, config) if user else None
            tree = ConversationTree.start(
                message_id=tree_id,
                text=text,
                lang=lang,
                actor=actor,
                config=config,
                goal_tree_size=goal_tree_size,
                frontend_message_id=frontend_message_id,
                synthetic=synthetic,
                model_name=model_name,
                origin=origin,
            )
            _attach(tree, tree_id, images, actor, config)
            uow.add(tree)
            if user is not None and task is not None:
                user.complete_task(task_id=task.id, result_id=tree_id, now=now, text_digest=digest)
            return tree_id

        return Outcome.of(*self.run(ids(tree_id, actor.user_id), command))

    def add_reply(
        self,
        *,
        actor: Actor,
        tree_id: UUID,
        parent_id: UUID,
        text: str,
        lang: str | None = None,
        frontend_message_id: str | None = None,
        task_id: UUID | None = None,
        role: Role | str | None = None,
        message_id: UUID | None = None,
        synthetic: bool = False,
        model_name: str | None = None,
        images: Sequence[ImageRef] = (),
    ) -> Outcome:
        new_id = message_id or message_id_for(actor.client_id, frontend_message_id)
        config = self.config

        def command(uow: UnitOfWork) -> UUID:
            now = self.now()
            user, task = task_for(uow, now, actor, task_id, REPLY_TASKS)
            tree = uow.get(ConversationTree, tree_id)
            if new_id in tree.messages:
                m = tree.messages[new_id]
                if m.parent_id == parent_id and m.user_id == actor.user_id and m.text == text:
                    return new_id  # the same request again
                raise MessageAlreadyExistsError(f"message {new_id} already exists")
            if task is not None and task.done:
                raise MessageAlreadyExistsError(f"task {task.id} was answered with another message")
            _check_target(task, parent_id)
            reply_role = REPLY_ROLE.get(TaskType(task.type)) if task is not None else role
            digest = user.check_not_duplicate_text(text, now, config) if user else None
            tree.add_reply(
                message_id=new_id,
                parent_id=parent_id,
                text=text,
                actor=actor,
                config=config,
                role=reply_role,
                lang=lang,
                frontend_message_id=frontend_message_id,
                synthetic=synthetic,
                model_name=model_name,
            )
            _attach(tree, new_id, images, actor, config)
            if user is not None and task is not None:
                user.complete_task(task_id=task.id, result_id=new_id, now=now, text_digest=digest)
            return new_id

        return Outcome.of(*self.run(ids(tree_id, actor.user_id), command))

    def submit_labels(
        self,
        *,
        actor: Actor,
        message_id: UUID,
        labels: dict[str, float],
        tree_id: UUID | None = None,
        kind: str = "task",
        task_id: UUID | None = None,
        valid_labels: Iterable[str] | None = None,
        mandatory_labels: Iterable[str] | None = None,
        client_scope: UUID | None = None,
    ) -> Outcome:
        """Labels on a message; without ``tree_id`` its tree comes from the message index.

        ``client_scope``: free labels and reports only on this client's messages (an
        untrusted API client's users must not moderate another client's data)."""
        tree = tree_id or self.tree_of_message(message_id)
        config = self.config

        def command(uow: UnitOfWork) -> UUID:
            now = self.now()
            user, task = task_for(uow, now, actor, task_id if kind == "task" else None, LABEL_TASKS)
            target = uow.get(ConversationTree, tree).messages.get(message_id)
            if kind == "task":
                if task is not None and task.done:
                    check_same_labels(target, actor, labels, task.id)
                    return message_id
                _check_target(task, message_id)
            elif kind in ("free", "report") and target is not None:
                check_free_label(target, actor, kind, client_scope)
            valid, mandatory = valid_labels, mandatory_labels
            if task is not None:
                valid = task.payload.get("valid_labels", valid)
                mandatory = task.payload.get("mandatory_labels", mandatory)
            uow.get(ConversationTree, tree).submit_labels(
                message_id=message_id,
                labels=labels,
                actor=actor,
                config=config,
                kind=kind,
                task_id=task_id,
                valid_labels=frozenset(valid) if valid is not None else None,
                mandatory_labels=frozenset(mandatory) if mandatory is not None else None,
            )
            if user is not None and task is not None:
                user.complete_task(task_id=task.id, result_id=message_id, now=now)
            return message_id

        return Outcome.of(*self.run(ids(tree, actor.user_id), command))

    def submit_ranking(
        self,
        *,
        actor: Actor,
        tree_id: UUID,
        parent_id: UUID,
        ranked_message_ids: list[UUID],
        not_rankable: bool = False,
        task_id: UUID | None = None,
        display_order: list[UUID] | None = None,
    ) -> Outcome:
        """A ranking, best first; ``display_order``: the order the ranker was shown the
        replies (for position-bias analyses), recorded as given."""
        config = self.config

        def command(uow: UnitOfWork) -> UUID:
            now = self.now()
            user, task = task_for(uow, now, actor, task_id, RANKING_TASKS)
            if task is not None and task.done:
                parent = uow.get(ConversationTree, tree_id).messages.get(parent_id)
                check_same_ranking(parent, actor, ranked_message_ids, not_rankable, task.id)
                return parent_id
            _check_target(task, parent_id)
            uow.get(ConversationTree, tree_id).submit_ranking(
                parent_id=parent_id,
                ranked_message_ids=list(ranked_message_ids),
                actor=actor,
                config=config,
                not_rankable=not_rankable,
                task_id=task_id,
                display_order=display_order,
            )
            if user is not None and task is not None:
                user.complete_task(task_id=task.id, result_id=parent_id, now=now)
            return parent_id

        return Outcome.of(*self.run(ids(tree_id, actor.user_id), command))
