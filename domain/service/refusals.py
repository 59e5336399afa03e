"""Rules a command checks beyond the aggregates' own: whose messages a client's users may
label freely, and what a repeated answer to a finished task must match.

A finished task answered again with the same values gets the earlier answer (a retry);
with different values it is refused (409), as a reply task answered with another text
is, so a client never believes a changed answer was recorded.
"""

from __future__ import annotations

from uuid import UUID

from domain.model.actor import Actor
from domain.model.errors import (
    DomainError,
    ErrorCode,
    MessageAlreadyExistsError,
    SelfLabelingError,
)
from domain.model.message import Message


class ForeignMessageError(DomainError):
    """A free label or report from an untrusted client on another client's message."""

    error_code = ErrorCode.API_CLIENT_NOT_AUTHORIZED
    http_status = 403


def check_free_label(message: Message, actor: Actor, kind: str, client_scope: UUID | None) -> None:
    """Free labels are refused on one's own message (as task labels are); with a scope,
    free labels and reports only on that client's messages (or on ones no client owns:
    imports, models)."""
    if kind == "free" and actor.user_id is not None and message.user_id == actor.user_id:
        raise SelfLabelingError("users cannot label their own messages")
    if (
        client_scope is not None
        and message.client_id is not None
        and message.client_id != client_scope
    ):
        raise ForeignMessageError(
            f"message {message.id} belongs to another API client: an untrusted client's "
            "users may label and report only that client's messages"
        )


def check_same_labels(
    message: Message | None, actor: Actor, labels: dict[str, float], task_id: UUID
) -> None:
    earlier = message.reviews.get(actor.user_id) if message is not None else None
    if earlier is None or earlier != {k: float(v) for k, v in labels.items()}:
        raise MessageAlreadyExistsError(f"task {task_id} was answered with other labels")


def check_same_ranking(
    parent: Message | None,
    actor: Actor,
    ranked: list[UUID],
    not_rankable: bool,
    task_id: UUID,
) -> None:
    earlier = [
        (ids, flag)
        for ranker, ids, flag in (parent.rankings if parent is not None else [])
        if ranker == actor.user_id
    ]
    if not earlier or earlier[-1] != (list(ranked), not_rankable):
        raise MessageAlreadyExistsError(f"task {task_id} was answered with another ranking")
