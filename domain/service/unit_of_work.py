"""One command attempt: the aggregates it loaded or created, saved together in one transaction.

Also what a command answers (``Outcome``) and the id rule that makes a retried request
name the same message (``message_id_for``). Nothing here knows the application: the unit
of work reads through eventsourcing's repository, and the application (domain.service.base)
saves what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.domain import Aggregate

from domain.model.errors import (
    ApiClientNotFoundError,
    DomainError,
    MessageNotFoundError,
    ModelNotFoundError,
    TaskNotFoundError,
    TreeNotFoundError,
    UserNotFoundError,
)
from domain.model.message_index import MessageIndex
from domain.model.task_index import TaskIndex
from domain.model.trained_model import TrainedModel
from domain.model.tree import ConversationTree
from domain.model.user import User

# Any aggregate: a unit of work loads whichever kind a command names (trees, users, clients,
# accounts, models, imports, indexes).
A = TypeVar("A", bound=Aggregate)


def message_id_for(client_id: UUID | None, frontend_message_id: str | None) -> UUID:
    """The same client message id always names the same message (idempotent retries)."""
    if frontend_message_id is None:
        return uuid4()
    return uuid5(NAMESPACE_URL, f"/messages/{client_id}/{frontend_message_id}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: the id it is about and the log position of its last event."""

    id: UUID
    position: int | None
    recorded: bool

    @classmethod
    def of(cls, id: UUID, position: int | None) -> Outcome:
        return cls(id=id, position=position, recorded=position is not None)


class UnitOfWork:
    """Aggregates loaded by one command attempt; saved together in one transaction."""

    def __init__(self, repository: Repository, attempt: int = 0):
        self.repository = repository
        self.attempt = attempt  # 0 first; more after a version conflict made the command rerun
        self.loaded: dict[UUID, Any] = {}
        self.new: list[Any] = []

    def get(self, cls: type[A], aggregate_id: UUID) -> A:
        if aggregate_id not in self.loaded:
            try:
                aggregate: Any = self.repository.get(aggregate_id, deepcopy_from_cache=False)
            except AggregateNotFoundError:
                raise not_found(cls, aggregate_id) from None
            if not isinstance(aggregate, cls):
                raise not_found(cls, aggregate_id)
            self.loaded[aggregate_id] = aggregate
        found: A = self.loaded[aggregate_id]
        return found

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """``get``, or None when there is no such aggregate."""
        try:
            return self.get(cls, aggregate_id)
        except DomainError:
            return None

    def add(self, aggregate: Any) -> None:
        self.loaded[aggregate.id] = aggregate
        self.new.append(aggregate)


def not_found(cls: type, aggregate_id: UUID) -> DomainError:
    if cls is ConversationTree:
        return TreeNotFoundError(f"tree {aggregate_id} not found")
    if cls is User:
        return UserNotFoundError(f"user {aggregate_id} not found")
    if cls is TrainedModel:
        return ModelNotFoundError(f"model {aggregate_id} is not registered")
    if cls is MessageIndex:
        return MessageNotFoundError(f"message index entry {aggregate_id} not found")
    if cls is TaskIndex:
        return TaskNotFoundError(f"task index entry {aggregate_id} not found")
    return ApiClientNotFoundError(f"api client {aggregate_id} not found")
