"""DataEngine: the application service over trees, users (with their tasks) and API clients.

Each command loads, decides, saves. Aggregates stay in an in-process cache, guarded by
striped locks, so a command costs no replay; a version conflict (another process wrote
first) evicts, reloads and retries a bounded number of times. Ids are deterministic,
so a retried request finds its own earlier result and records nothing new.
The only I/O goes through eventsourcing's recorder, chosen by the environment
(SQLite in production, in-memory POPO in unit tests).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Recording

from domain.model.actor import Actor
from domain.model.api_client import ApiClient, client_id_for_key, new_api_key
from domain.model.config import TreeConfig
from domain.model.errors import (
    ApiClientNotFoundError,
    ConcurrencyError,
    DomainError,
    ModelNotFoundError,
    TreeNotFoundError,
    UserNotFoundError,
)
from domain.model.trained_model import TrainedModel
from domain.model.tree import ConversationTree
from domain.model.user import User, user_id_for
from domain.service import commands

T = TypeVar("T")
A = TypeVar("A", ConversationTree, User, ApiClient, TrainedModel)


def message_id_for(client_id: UUID | None, frontend_message_id: str | None) -> UUID:
    """The same client message id always names the same message (idempotent retries)."""
    if frontend_message_id is None:
        return uuid4()
    return uuid5(NAMESPACE_URL, f"/messages/{client_id}/{frontend_message_id}")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: the id it is about and the log position of its last event."""

    id: UUID
    position: int | None
    recorded: bool


class UnitOfWork:
    """Aggregates loaded by one command attempt; saved together in one transaction."""

    def __init__(self, app: DataEngine):
        self.app = app
        self.loaded: dict[UUID, Any] = {}
        self.new: list[Any] = []

    def get(self, cls: type[A], aggregate_id: UUID) -> A:
        if aggregate_id not in self.loaded:
            try:
                aggregate = self.app.repository.get(aggregate_id, deepcopy_from_cache=False)
            except AggregateNotFoundError:
                raise _not_found(cls, aggregate_id) from None
            if not isinstance(aggregate, cls):
                raise _not_found(cls, aggregate_id)
            self.loaded[aggregate_id] = aggregate
        return self.loaded[aggregate_id]

    def add(self, aggregate: Any) -> None:
        self.loaded[aggregate.id] = aggregate
        self.new.append(aggregate)


def _not_found(cls: type, aggregate_id: UUID) -> DomainError:
    if cls is ConversationTree:
        return TreeNotFoundError(f"tree {aggregate_id} not found")
    if cls is User:
        return UserNotFoundError(f"user {aggregate_id} not found")
    if cls is TrainedModel:
        return ModelNotFoundError(f"model {aggregate_id} is not registered")
    return ApiClientNotFoundError(f"api client {aggregate_id} not found")


class DataEngine(Application):
    name = "dataengine"
    env = {
        "MAPPER_TOPIC": "api.storage.codec:MsgspecMapper",
        "AGGREGATE_CACHE_MAXSIZE": "50000",
        # We hold a lock per aggregate and save through this process, so the cached
        # object is current unless another process wrote: then save() conflicts and
        # the command retries on a fresh copy.
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }
    max_attempts = 5
    lock_stripes = 1024

    def __init__(
        self,
        env: dict[str, str] | None = None,
        config: TreeConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        **kwargs: Any,
    ):
        super().__init__(env=env, **kwargs)
        self.config = config or TreeConfig()
        self.clock = clock
        self._locks = [threading.RLock() for _ in range(self.lock_stripes)]

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _locked(self, ids: tuple[UUID, ...]) -> Iterator[None]:
        stripes = sorted({i.int % self.lock_stripes for i in ids})
        with ExitStack() as stack:
            for stripe in stripes:
                stack.enter_context(self._locks[stripe])
            yield

    def _evict(self, aggregate_id: UUID) -> None:
        cache = self.repository.cache
        if cache is not None:
            try:
                cache.get(aggregate_id, evict=True)
            except KeyError:
                pass

    def _stripes(self, ids: tuple[UUID, ...]) -> list[threading.RLock]:
        if len(ids) == 1:
            return [self._locks[ids[0].int % self.lock_stripes]]
        return [self._locks[s] for s in sorted({i.int % self.lock_stripes for i in ids})]

    def run(
        self, lock_ids: tuple[UUID, ...], command: Callable[[UnitOfWork], T]
    ) -> tuple[T, int | None]:
        """Run a command under the locks of the aggregates it touches; save what changed.

        Returns the command's result and the log position of the last event saved
        (None when nothing was recorded).
        """
        locks = self._stripes(lock_ids)
        for _ in range(self.max_attempts):
            uow = UnitOfWork(self)
            for lock in locks:  # always in stripe order, so two commands never deadlock
                lock.acquire()
            try:
                result = command(uow)
                changed = [a for a in uow.loaded.values() if a.pending_events]
                position = None
                if changed:
                    recordings = self.save(*changed)
                    position = recordings[-1].notification.id if recordings else None
                return result, position
            except IntegrityError:
                for aggregate_id in uow.loaded:
                    self._evict(aggregate_id)
                continue
            except DomainError:
                for aggregate in uow.loaded.values():
                    if aggregate.pending_events:
                        self._evict(aggregate.id)
                raise
            except BaseException:
                for aggregate_id in uow.loaded:
                    self._evict(aggregate_id)
                raise
            finally:
                for lock in reversed(locks):
                    lock.release()
        raise ConcurrencyError("too many concurrent changes; try again")

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording]:
        """Application.save without its per-save overheads, for plain aggregates.

        The stock save tests every object against runtime-checkable Protocols (slow:
        typing walks the protocol's attributes each time), calls the deprecated
        notify() and looks for snapshots to take. Commands save only aggregates, we
        take no snapshots by default, so this path records the events, puts the
        aggregates in the cache and calls the _notify hook, as the stock path does.
        Anything else (events, tracking, snapshot intervals) takes the stock path.
        """
        if kwargs or self.snapshotting_intervals or not all(isinstance(o, Aggregate) for o in objs):
            return super().save(*objs, **kwargs)
        events: list[Any] = []
        for obj in objs:
            events += obj.collect_events()
        recordings = self.events.put(events)
        repository = self.repository
        if repository.cache is not None and not repository.fastforward:
            for obj in objs:
                repository.cache.put(obj.id, obj)
        self._notify(recordings)
        return recordings

    def close(self) -> None:
        close = getattr(self.recorder, "close", None)  # a recorder with its own connection
        if callable(close):
            close()
        super().close()

    def now(self) -> datetime:
        return self.clock()

    # ------------------------------------------------------------------ clients
    def register_client(
        self, *, name: str, api_key: str | None = None, trusted: bool = False, **details: Any
    ) -> tuple[UUID, str]:
        api_key = api_key or new_api_key()
        client_id = client_id_for_key(api_key)

        def command(uow: UnitOfWork) -> UUID:
            try:
                uow.get(ApiClient, client_id)
                return client_id
            except ApiClientNotFoundError:
                uow.add(ApiClient.register(name=name, api_key=api_key, trusted=trusted, **details))
                return client_id

        self.run((client_id,), command)
        return client_id, api_key

    def authenticate(self, api_key: str) -> ApiClient | None:
        try:
            client = self.repository.get(client_id_for_key(api_key), deepcopy_from_cache=False)
        except AggregateNotFoundError:
            return None
        if not isinstance(client, ApiClient) or not client.enabled or not client.matches(api_key):
            return None
        return client

    def change_client_access(
        self, client_id: UUID, *, enabled: bool | None = None, trusted: bool | None = None
    ) -> None:
        self.run(
            (client_id,),
            lambda uow: uow.get(ApiClient, client_id).change_access(
                enabled=enabled, trusted=trusted
            ),
        )

    # ------------------------------------------------------------------ users
    def ensure_user(
        self,
        *,
        client_id: UUID,
        auth_method: str,
        username: str,
        display_name: str | None = None,
        **profile: Any,
    ) -> UUID:
        """Create the user on first sight; keep the display name (and profile) current."""
        user_id = user_id_for(client_id, auth_method, username)

        def command(uow: UnitOfWork) -> UUID:
            try:
                user = uow.get(User, user_id)
            except UserNotFoundError:
                user = User.register(
                    client_id=client_id,
                    auth_method=auth_method,
                    username=username,
                    display_name=display_name or username,
                )
                uow.add(user)
            user.update_profile(display_name=display_name, **profile)
            return user_id

        return self.run((user_id,), command)[0]

    def update_user(self, user_id: UUID, **changes: Any) -> None:
        self.run((user_id,), lambda uow: uow.get(User, user_id).update_profile(**changes))

    def get_user(self, user_id: UUID) -> User:
        return self._read(User, user_id)

    # ------------------------------------------------------------------ trees
    def get_tree(
        self, tree_id: UUID, *, version: int | None = None, as_of: datetime | None = None
    ) -> ConversationTree:
        """The tree now, or as it was at a version or a moment (a private copy)."""
        if as_of is not None:
            version = self.version_at(tree_id, as_of)
        if version is None:
            return self._read(ConversationTree, tree_id)
        try:
            tree = self.repository.get(tree_id, version=version)
        except AggregateNotFoundError:
            raise TreeNotFoundError(f"tree {tree_id} has no version {version}") from None
        if not isinstance(tree, ConversationTree):
            raise TreeNotFoundError(f"tree {tree_id} not found")
        return tree

    def version_at(self, tree_id: UUID, moment: datetime) -> int:
        version = 0
        for event in self.events.get(tree_id):
            if event.timestamp > moment:
                break
            version = event.originator_version
        if version == 0:
            raise TreeNotFoundError(f"tree {tree_id} did not exist at {moment.isoformat()}")
        return version

    def _read(self, cls: type[A], aggregate_id: UUID) -> A:
        import copy

        with self._locked((aggregate_id,)):
            aggregate = UnitOfWork(self).get(cls, aggregate_id)
            return copy.deepcopy(aggregate)

    # Commands on trees, tasks and moderation live in domain.service.commands (one function each)
    # and are bound here so callers use one service object.
    create_prompt = commands.create_prompt
    add_reply = commands.add_reply
    submit_labels = commands.submit_labels
    submit_ranking = commands.submit_ranking
    issue_task = commands.issue_task
    ack_task = commands.ack_task
    nack_task = commands.nack_task
    expire_tasks = commands.expire_tasks
    activate_tree = commands.activate_tree
    retry_scoring = commands.retry_scoring
    halt_tree = commands.halt_tree
    resume_tree = commands.resume_tree
    delete_message = commands.delete_message
    undelete_message = commands.undelete_message
    edit_message = commands.edit_message
    toggle_emoji = commands.toggle_emoji
    # The models registry (domain.model.trained_model).
    register_model = commands.register_model
    get_model = commands.get_model


__all__ = ["Actor", "DataEngine", "Outcome", "message_id_for", "new_api_key"]
