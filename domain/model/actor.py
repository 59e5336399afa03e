"""Who caused an event: the end user and the API client that spoke for them."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: UUID | None = None
    client_id: UUID | None = None


# Follow-up facts (review decisions, state moves, auto-moderation) have no human actor.
SYSTEM = Actor()
