"""The User aggregate: an end user as seen through one API client, and their tasks.

Tasks are events of the user, not of a tree: handing out a task must not write to
the tree, or every request for a popular tree would serialise on it. The user is also
where the per-user limits live (pending tasks, duplicate texts).
"""

from __future__ import annotations

from dataclasses import field
from datetime import datetime, timedelta
from hashlib import sha256
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.errors import (
    DuplicateTextError,
    InvalidInputError,
    TaskAlreadyDoneError,
    TaskAlreadyUpdatedError,
    TaskExpiredError,
    TaskNotAckedError,
    TaskNotFoundError,
    TaskTypeMismatchError,
    TooManyPendingTasksError,
    UserDisabledError,
)
from domain.model.input_rules import check_display_name, check_username
from domain.model.topics import keep_stored_topics


def user_id_for(client_id: UUID, auth_method: str, username: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/users/{client_id}/{auth_method}/{username}")


def text_digest(text: str) -> str:
    return sha256(text.strip().encode()).hexdigest()[:32]


class Task:
    __slots__ = (
        "id",
        "type",
        "tree_id",
        "message_id",
        "lang",
        "payload",
        "issued_at",
        "expires_at",
        "frontend_message_id",
        "done",
        "skipped",
        "expired",
        "result_id",
    )

    def __init__(self, event: User.TaskIssued):
        self.id = event.task_id
        self.type = event.task_type
        self.tree_id = event.tree_id
        self.message_id = event.message_id
        self.lang = event.lang
        self.payload = event.payload
        self.issued_at = event.issued_at
        self.expires_at = event.expires_at
        self.frontend_message_id: str | None = None
        self.done = self.skipped = self.expired = False
        self.result_id: UUID | None = None

    @property
    def open(self) -> bool:
        return not (self.done or self.skipped or self.expired)


class User(Aggregate):
    # Set by the events' apply methods; init=False: eventsourcing builds it from Registered.
    client_id: UUID | None = field(init=False)
    auth_method: str = field(init=False)
    username: str = field(init=False)
    display_name: str = field(init=False)
    enabled: bool = field(init=False)
    deleted: bool = field(init=False)
    show_on_leaderboard: bool = field(init=False)
    tos_accepted_at: datetime | None = field(init=False)
    notes: str = field(init=False)
    tasks: dict[UUID, Task] = field(init=False)
    # frontend message id -> task id, for tasks acknowledged with one
    frontend_index: dict[str, UUID] = field(init=False)
    # (when, digest) of the texts the user sent, for the duplicate-text window
    recent_texts: list[tuple[datetime, str]] = field(init=False)
    # The user this one was merged into (MergedInto), or None
    merged_into: UUID | None = field(init=False)

    class Event(Aggregate.Event):
        client_id: UUID | None

    class Registered(Event, Aggregate.Created):
        auth_method: str
        username: str
        display_name: str

        def apply(self, user: User) -> None:
            user.client_id = self.client_id
            user.auth_method = self.auth_method
            user.username = self.username
            user.display_name = self.display_name
            user.enabled = True
            user.deleted = False
            user.show_on_leaderboard = True
            user.tos_accepted_at = None
            user.notes = ""
            user.tasks = {}
            user.frontend_index = {}
            user.recent_texts = []
            user.merged_into = None

    class ProfileUpdated(Event):
        """Only the fields that changed are set; None means unchanged."""

        display_name: str | None
        enabled: bool | None
        show_on_leaderboard: bool | None
        tos_accepted_at: datetime | None
        notes: str | None
        deleted: bool | None

        def apply(self, user: User) -> None:
            for name in (
                "display_name",
                "enabled",
                "show_on_leaderboard",
                "tos_accepted_at",
                "notes",
                "deleted",
            ):
                value = getattr(self, name)
                if value is not None:
                    setattr(user, name, value)

    class TaskIssued(Event):
        task_id: UUID
        task_type: str
        tree_id: UUID | None
        message_id: UUID | None
        lang: str
        payload: dict[str, Any]
        issued_at: datetime
        expires_at: datetime

        def apply(self, user: User) -> None:
            user.tasks[self.task_id] = Task(self)

    class TaskAcknowledged(Event):
        task_id: UUID
        frontend_message_id: str

        def apply(self, user: User) -> None:
            user.tasks[self.task_id].frontend_message_id = self.frontend_message_id
            user.frontend_index[self.frontend_message_id] = self.task_id

    class TaskSkipped(Event):
        task_id: UUID
        reason: str | None

        def apply(self, user: User) -> None:
            user.tasks[self.task_id].skipped = True

    class TaskCompleted(Event):
        """result_id: the message written, labelled, or whose replies were ranked."""

        task_id: UUID
        result_id: UUID | None
        text_digest: str | None

        def apply(self, user: User) -> None:
            task = user.tasks[self.task_id]
            task.done = True
            task.result_id = self.result_id
            if self.text_digest:
                user.recent_texts.append((self.timestamp, self.text_digest))

    class TaskExpired(Event):
        task_id: UUID

        def apply(self, user: User) -> None:
            user.tasks[self.task_id].expired = True

    class UsersMerged(Event):
        """Other users were merged into this one by a moderator (OA's merge_users).

        What they wrote, labelled, reacted to and were handed counts as this user's from
        here on; their own events stay in the log as they were."""

        source_user_ids: list[UUID]
        actor_user_id: UUID | None
        actor_client_id: UUID | None

        def apply(self, user: User) -> None:
            pass

    class MergedInto(Event):
        """This user was merged into another: disabled, deleted, off the leaderboard.

        OA deletes the row; here the user stays in the log and in the users list."""

        destination_user_id: UUID
        actor_user_id: UUID | None
        actor_client_id: UUID | None

        def apply(self, user: User) -> None:
            user.enabled = user.show_on_leaderboard = False
            user.deleted = True
            user.merged_into = self.destination_user_id

    # ------------------------------------------------------------------ commands
    @classmethod
    def register(
        cls, *, client_id: UUID, auth_method: str, username: str, display_name: str
    ) -> User:
        check_username(username)
        check_display_name(display_name or username)
        return cls._create(
            cls.Registered,
            id=user_id_for(client_id, auth_method, username),
            client_id=client_id,
            auth_method=auth_method,
            username=username,
            display_name=display_name or username,
        )

    def update_profile(self, **changes: Any) -> bool:
        fields = (
            "display_name",
            "enabled",
            "show_on_leaderboard",
            "tos_accepted_at",
            "notes",
            "deleted",
        )
        changed = {
            k: v
            for k, v in changes.items()
            if k in fields and v is not None and getattr(self, k) != v
        }
        if not changed:
            return False
        if "display_name" in changed:
            check_display_name(changed["display_name"])
        self.trigger_event(
            self.ProfileUpdated, client_id=self.client_id, **{k: changed.get(k) for k in fields}
        )
        return True

    def absorb(self, sources: list[User], actor: Actor) -> None:
        """Merge ``sources`` into this user; each source records where it went."""
        ids = [s.id for s in sources]
        if not ids or self.id in ids or len(set(ids)) != len(ids):
            raise InvalidInputError("source users must be other users, each named once")
        for user in (self, *sources):
            if getattr(user, "merged_into", None) is not None:  # older cached copies lack it
                raise InvalidInputError(f"user {user.id} was merged into another user")
        who = {"actor_user_id": actor.user_id, "actor_client_id": actor.client_id}
        self.trigger_event(self.UsersMerged, client_id=self.client_id, source_user_ids=ids, **who)
        for source in sources:
            source.trigger_event(
                source.MergedInto, client_id=source.client_id, destination_user_id=self.id, **who
            )

    def check_enabled(self) -> None:
        if not self.enabled or self.deleted:
            raise UserDisabledError(f"user {self.username} is disabled")

    def pending_tasks(self, now: datetime, config: TreeConfig) -> int:
        since = now - timedelta(seconds=config.recent_tasks_span_sec)
        return len([t for t in self.tasks.values() if t.open and t.issued_at >= since])

    def issue_task(
        self,
        *,
        task_id: UUID,
        task_type: str,
        tree_id: UUID | None,
        message_id: UUID | None,
        lang: str,
        payload: dict[str, Any],
        now: datetime,
        config: TreeConfig,
    ) -> Task:
        self.check_enabled()
        if self.pending_tasks(now, config) >= config.max_pending_tasks_per_user:
            raise TooManyPendingTasksError(
                f"user has {config.max_pending_tasks_per_user} or more pending tasks"
            )
        self.trigger_event(
            self.TaskIssued,
            client_id=self.client_id,
            task_id=task_id,
            task_type=task_type,
            tree_id=tree_id,
            message_id=message_id,
            lang=lang,
            payload=payload,
            issued_at=now,
            expires_at=now + timedelta(minutes=config.task_validity_minutes),
        )
        return self.tasks[task_id]

    def task(self, task_id: UUID) -> Task:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise TaskNotFoundError(f"task {task_id} not found") from None

    def task_by_frontend_id(self, frontend_message_id: str) -> Task:
        try:
            return self.tasks[self.frontend_index[frontend_message_id]]
        except KeyError:
            raise TaskNotFoundError(
                f"no task acknowledged with frontend message id {frontend_message_id!r}"
            ) from None

    def acknowledge_task(self, *, task_id: UUID, frontend_message_id: str, now: datetime) -> None:
        task = self.task(task_id)
        if task.frontend_message_id == frontend_message_id:
            return  # a retried ack is answered the same
        self._check_open(task, now)
        if task.frontend_message_id is not None:
            raise TaskAlreadyUpdatedError(f"task {task_id} was acknowledged with another id")
        if frontend_message_id in self.frontend_index:
            raise TaskAlreadyUpdatedError(f"frontend id {frontend_message_id!r} is already bound")
        self.trigger_event(
            self.TaskAcknowledged,
            client_id=self.client_id,
            task_id=task_id,
            frontend_message_id=frontend_message_id,
        )

    def skip_task(self, *, task_id: UUID, reason: str | None, now: datetime) -> Task:
        task = self.task(task_id)
        self._check_open(task, now)
        self.trigger_event(
            self.TaskSkipped, client_id=self.client_id, task_id=task_id, reason=reason
        )
        return task

    def check_can_complete(self, task: Task, task_types: frozenset[str], now: datetime) -> None:
        if task.type not in task_types:
            raise TaskTypeMismatchError(f"task {task.id} is a {task.type} task")
        if task.frontend_message_id is None:
            raise TaskNotAckedError(f"task {task.id} has not been acknowledged")
        self._check_open(task, now)

    def check_not_duplicate_text(self, text: str, now: datetime, config: TreeConfig) -> str:
        digest = text_digest(text)
        since = now - timedelta(minutes=config.duplicate_message_filter_window_minutes)
        if any(at >= since and d == digest for at, d in self.recent_texts):
            raise DuplicateTextError("the same text was sent by this user recently")
        return digest

    def complete_task(
        self,
        *,
        task_id: UUID,
        result_id: UUID | None,
        now: datetime,
        text_digest: str | None = None,
    ) -> None:
        # The duplicate-text window compares this timestamp with the caller's clock.
        self.trigger_event(
            self.TaskCompleted,
            client_id=self.client_id,
            task_id=task_id,
            result_id=result_id,
            text_digest=text_digest,
            timestamp=now,
        )

    def expire_tasks(self, now: datetime) -> list[UUID]:
        expired = [t.id for t in self.tasks.values() if t.open and t.expires_at <= now]
        for task_id in expired:
            self.trigger_event(self.TaskExpired, client_id=self.client_id, task_id=task_id)
        return expired

    def _check_open(self, task: Task, now: datetime) -> None:
        if task.done:
            raise TaskAlreadyDoneError(f"task {task.id} is already done")
        if task.skipped:
            raise TaskAlreadyUpdatedError(f"task {task.id} was skipped")
        if task.expired or task.expires_at <= now:
            raise TaskExpiredError(f"task {task.id} has expired")


# Stored under its pre-move topics (domain.model.topics).
keep_stored_topics(User)
