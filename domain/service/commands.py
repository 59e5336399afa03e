"""The DataEngine commands: load, decide, save. Bound as methods of DataEngine.

A task-based command checks the user's task, applies the fact to the tree and marks the
task done; both aggregates are saved in one transaction, so a task is never done
without its fact, nor a fact recorded twice for one task.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid5

from domain.model.actor import Actor
from domain.model.errors import (
    InvalidMessageError,
    MessageAlreadyExistsError,
    ModelNotFoundError,
    TreeNotFoundError,
    UserNotFoundError,
)
from domain.model.message import SKIP_LABELING, SKIP_RANKING, SKIP_REPLY, Role
from domain.model.task_types import (
    LABEL_TASKS,
    PROMPT_TASKS,
    RANKING_TASKS,
    REPLY_ROLE,
    REPLY_TASKS,
    TaskType,
)
from domain.model.trained_model import TrainedModel, model_id_for
from domain.model.tree import ConversationTree
from domain.model.user import Task, User

if TYPE_CHECKING:
    from domain.service.application import DataEngine, Outcome, UnitOfWork


def _outcome(id: UUID, position: int | None) -> Outcome:
    return _Outcome()(id=id, position=position, recorded=position is not None)


@cache
def _Outcome() -> type[Outcome]:
    from domain.service.application import Outcome  # a cycle: application imports this module

    return Outcome


def _ids(*ids: UUID | None) -> tuple[UUID, ...]:
    return tuple(i for i in ids if i is not None)


def _task_for(
    uow: UnitOfWork, app: DataEngine, actor: Actor, task_id: UUID | None, types: Iterable[TaskType]
) -> tuple[User | None, Task | None]:
    if actor.user_id is None:
        return None, None
    if task_id is None:
        # Free work (no task) is still refused to a disabled user; actors that are not
        # registered users (imports, pre-labelling models) have no account to disable.
        try:
            uow.get(User, actor.user_id).check_enabled()
        except UserNotFoundError:
            pass
        return None, None
    user = uow.get(User, actor.user_id)
    user.check_enabled()
    task = user.task(task_id)
    if task.done:
        return user, task  # a retry: the caller answers with the earlier result
    user.check_can_complete(task, frozenset(types), app.now())
    return user, task


def _check_target(task: Task | None, expected: UUID) -> None:
    if task is not None and task.message_id is not None and task.message_id != expected:
        raise InvalidMessageError(
            f"task {task.id} is about message {task.message_id}, not {expected}"
        )


def create_prompt(
    app: DataEngine,
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
) -> Outcome:
    from domain.service.application import message_id_for

    tree_id = message_id or message_id_for(actor.client_id, frontend_message_id)

    def command(uow: UnitOfWork) -> UUID:
        user, task = _task_for(uow, app, actor, task_id, PROMPT_TASKS)
        if task is not None and task.done:
            if task.result_id != tree_id:
                raise MessageAlreadyExistsError(f"task {task.id} was answered with another message")
            return tree_id
        try:
            existing = uow.get(ConversationTree, tree_id)
        except TreeNotFoundError:
            existing = None
        if existing is not None:
            if existing.root.user_id == actor.user_id and existing.root.text == text:
                return tree_id  # the same request again
            raise MessageAlreadyExistsError(f"message {tree_id} already exists")
        digest = user.check_not_duplicate_text(text, app.now(), app.config) if user else None
        uow.add(
            ConversationTree.start(
                message_id=tree_id,
                text=text,
                lang=lang,
                actor=actor,
                config=app.config,
                goal_tree_size=goal_tree_size,
                frontend_message_id=frontend_message_id,
                synthetic=synthetic,
                model_name=model_name,
                origin=origin,
            )
        )
        if user is not None and task is not None:
            user.complete_task(
                task_id=task.id, result_id=tree_id, now=app.now(), text_digest=digest
            )
        return tree_id

    result, position = app.run(_ids(tree_id, actor.user_id), command)
    return _outcome(result, position)


def add_reply(
    app: DataEngine,
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
) -> Outcome:
    from domain.service.application import message_id_for

    new_id = message_id or message_id_for(actor.client_id, frontend_message_id)

    def command(uow: UnitOfWork) -> UUID:
        user, task = _task_for(uow, app, actor, task_id, REPLY_TASKS)
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
        digest = user.check_not_duplicate_text(text, app.now(), app.config) if user else None
        tree.add_reply(
            message_id=new_id,
            parent_id=parent_id,
            text=text,
            actor=actor,
            config=app.config,
            role=reply_role,
            lang=lang,
            frontend_message_id=frontend_message_id,
            synthetic=synthetic,
            model_name=model_name,
        )
        if user is not None and task is not None:
            user.complete_task(task_id=task.id, result_id=new_id, now=app.now(), text_digest=digest)
        return new_id

    result, position = app.run(_ids(tree_id, actor.user_id), command)
    return _outcome(result, position)


def submit_labels(
    app: DataEngine,
    *,
    actor: Actor,
    tree_id: UUID,
    message_id: UUID,
    labels: dict[str, float],
    kind: str = "task",
    task_id: UUID | None = None,
    valid_labels: Iterable[str] | None = None,
    mandatory_labels: Iterable[str] | None = None,
) -> Outcome:
    def command(uow: UnitOfWork) -> UUID:
        user, task = _task_for(uow, app, actor, task_id if kind == "task" else None, LABEL_TASKS)
        if kind == "task":
            if task is not None and task.done:
                return message_id
            _check_target(task, message_id)
        valid, mandatory = valid_labels, mandatory_labels
        if task is not None:
            valid = task.payload.get("valid_labels", valid)
            mandatory = task.payload.get("mandatory_labels", mandatory)
        tree = uow.get(ConversationTree, tree_id)
        tree.submit_labels(
            message_id=message_id,
            labels=labels,
            actor=actor,
            config=app.config,
            kind=kind,
            task_id=task_id,
            valid_labels=frozenset(valid) if valid is not None else None,
            mandatory_labels=frozenset(mandatory) if mandatory is not None else None,
        )
        if user is not None and task is not None:
            user.complete_task(task_id=task.id, result_id=message_id, now=app.now())
        return message_id

    result, position = app.run(_ids(tree_id, actor.user_id), command)
    return _outcome(result, position)


def submit_ranking(
    app: DataEngine,
    *,
    actor: Actor,
    tree_id: UUID,
    parent_id: UUID,
    ranked_message_ids: list[UUID],
    not_rankable: bool = False,
    task_id: UUID | None = None,
) -> Outcome:
    def command(uow: UnitOfWork) -> UUID:
        user, task = _task_for(uow, app, actor, task_id, RANKING_TASKS)
        if task is not None and task.done:
            return parent_id
        _check_target(task, parent_id)
        tree = uow.get(ConversationTree, tree_id)
        tree.submit_ranking(
            parent_id=parent_id,
            ranked_message_ids=list(ranked_message_ids),
            actor=actor,
            config=app.config,
            not_rankable=not_rankable,
            task_id=task_id,
        )
        if user is not None and task is not None:
            user.complete_task(task_id=task.id, result_id=parent_id, now=app.now())
        return parent_id

    result, position = app.run(_ids(tree_id, actor.user_id), command)
    return _outcome(result, position)


def issue_task(
    app: DataEngine,
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
        task_id = uuid5(user_id, f"task/{len(user.tasks)}")
        return user.issue_task(
            task_id=task_id,
            task_type=TaskType(task_type).value,
            tree_id=tree_id,
            message_id=message_id,
            lang=lang,
            payload=dict(payload or {}),
            now=app.now(),
            config=app.config,
        )

    return app.run((user_id,), command)[0]


def ack_task(app: DataEngine, *, user_id: UUID, task_id: UUID, frontend_message_id: str) -> None:
    app.run(
        (user_id,),
        lambda uow: uow.get(User, user_id).acknowledge_task(
            task_id=task_id, frontend_message_id=frontend_message_id, now=app.now()
        ),
    )


_SKIP_EMOJI = {
    **{t: SKIP_REPLY for t in REPLY_TASKS},
    **{t: SKIP_LABELING for t in LABEL_TASKS},
    **{t: SKIP_RANKING for t in RANKING_TASKS},
}


def nack_task(app: DataEngine, *, user_id: UUID, task_id: UUID, reason: str | None = None) -> None:
    """Skip a task: the user no longer sees its target; reply skips feed auto-moderation."""
    # The task's tree (fixed when it was issued) says which locks to take; read from the
    # cached user, not from a deep copy of it (its tasks' payloads made that cost more
    # than the skip itself).
    tree_id = app.run((user_id,), lambda uow: uow.get(User, user_id).task(task_id).tree_id)[0]

    def command(uow: UnitOfWork) -> None:
        user = uow.get(User, user_id)
        task = user.skip_task(task_id=task_id, reason=reason, now=app.now())
        emoji = _SKIP_EMOJI.get(TaskType(task.type))
        if emoji and task.tree_id is not None and task.message_id is not None:
            tree = uow.get(ConversationTree, task.tree_id)
            tree.record_skip(
                message_id=task.message_id,
                emoji=emoji,
                actor=Actor(user_id, user.client_id),
                config=app.config,
            )

    app.run(_ids(user_id, tree_id), command)


def expire_tasks(app: DataEngine, *, user_id: UUID) -> list[UUID]:
    return app.run((user_id,), lambda uow: uow.get(User, user_id).expire_tasks(app.now()))[0]


def _tree_command(app: DataEngine, tree_id: UUID, fn: Any) -> int | None:
    return app.run((tree_id,), lambda uow: fn(uow.get(ConversationTree, tree_id)))[1]


def activate_tree(app: DataEngine, *, tree_id: UUID, reason: str = "prompt_lottery") -> int | None:
    return _tree_command(app, tree_id, lambda t: t.activate(config=app.config, reason=reason))


def retry_scoring(app: DataEngine, *, tree_id: UUID) -> int | None:
    return _tree_command(app, tree_id, lambda t: t.retry_scoring(config=app.config))


def halt_tree(
    app: DataEngine, *, tree_id: UUID, actor: Actor, reason: str = "moderator"
) -> int | None:
    return _tree_command(app, tree_id, lambda t: t.halt(actor=actor, reason=reason))


def resume_tree(app: DataEngine, *, tree_id: UUID, actor: Actor) -> int | None:
    return _tree_command(app, tree_id, lambda t: t.resume(actor=actor, config=app.config))


def delete_message(app: DataEngine, *, tree_id: UUID, message_id: UUID, actor: Actor) -> int | None:
    return _tree_command(
        app,
        tree_id,
        lambda t: t.delete_message(message_id=message_id, actor=actor, config=app.config),
    )


def undelete_message(
    app: DataEngine, *, tree_id: UUID, message_id: UUID, actor: Actor
) -> int | None:
    return _tree_command(
        app,
        tree_id,
        lambda t: t.undelete_message(message_id=message_id, actor=actor, config=app.config),
    )


def edit_message(
    app: DataEngine, *, tree_id: UUID, message_id: UUID, text: str, actor: Actor
) -> int | None:
    return _tree_command(
        app,
        tree_id,
        lambda t: t.edit_message(message_id=message_id, text=text, actor=actor, config=app.config),
    )


def toggle_emoji(
    app: DataEngine,
    *,
    tree_id: UUID,
    message_id: UUID,
    emoji: str,
    actor: Actor,
    op: str = "toggle",
) -> int | None:
    return _tree_command(
        app,
        tree_id,
        lambda t: t.toggle_emoji(
            message_id=message_id, emoji=emoji, actor=actor, config=app.config, op=op
        ),
    )


def register_model(
    app: DataEngine,
    *,
    name: str,
    path: str,
    kind: str,
    base_model: str | None = None,
    dataset_position: int | None = None,
    dataset_digest: str | None = None,
    metrics: dict[str, Any] | None = None,
    actor: Actor | None = None,
) -> Outcome:
    """Record a model in the registry; the same facts again record nothing."""
    fields = dict(
        name=name,
        path=path,
        kind=kind,
        base_model=base_model,
        dataset_position=dataset_position,
        dataset_digest=dataset_digest,
        metrics=metrics,
    )
    model_id = model_id_for(name)

    def command(uow: UnitOfWork) -> UUID:
        try:
            existing = uow.get(TrainedModel, model_id)
        except ModelNotFoundError:
            uow.add(TrainedModel.register(actor=actor or Actor(), **fields))
        else:
            existing.check_same(**fields)
        return model_id

    result, position = app.run((model_id,), command)
    return _outcome(result, position)


def get_model(app: DataEngine, name: str) -> TrainedModel:
    """The registry entry of a name (ModelNotFoundError when there is none)."""
    try:
        return app._read(TrainedModel, model_id_for(name))
    except ModelNotFoundError:
        raise ModelNotFoundError(f"model {name!r} is not registered") from None
