"""A message inside a conversation tree: the state the tree's events build up.

Messages are entities of the ConversationTree aggregate, never stored on their own.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID

from domain.model.errors import TextEmptyError, TextTooLongError
from domain.model.input_rules import check_no_nul

if TYPE_CHECKING:
    from domain.model.images import ImageRef


class Role(StrEnum):
    PROMPTER = "prompter"
    ASSISTANT = "assistant"

    @property
    def reply_role(self) -> Role:
        return Role.ASSISTANT if self is Role.PROMPTER else Role.PROMPTER


USER_EMOJIS = frozenset(
    {
        "+1",
        "-1",
        "red_flag",
        "100",
        "rofl",
        "clap",
        "diamond",
        "heart_eyes",
        "disappointed",
        "poop",
        "skull",
    }
)
SKIP_REPLY, SKIP_RANKING, SKIP_LABELING = "_skip_reply", "_skip_ranking", "_skip_labeling"
SYSTEM_EMOJIS = frozenset({SKIP_REPLY, SKIP_RANKING, SKIP_LABELING})


def check_text(text: str, limit: int) -> None:
    if not text or not text.strip():
        raise TextEmptyError("message text is empty")
    if len(text) > limit:
        raise TextTooLongError(f"message text is {len(text)} characters long, the limit is {limit}")
    check_no_nul(text, "the message text")


class Message:
    __slots__ = (
        "id",
        "parent_id",
        "role",
        "depth",
        "text",
        "lang",
        "user_id",
        "client_id",
        "frontend_message_id",
        "created_at",
        "synthetic",
        "model_name",
        "children",
        "review_count",
        "review_result",
        "reviews",
        "free_labels",
        "deleted",
        "edited",
        "revision",
        "emojis",
        "rankings",
        "ranking_count",
        "rank",
        "review_score",
        "purged",
        "images",
    )

    def __init__(
        self,
        *,
        id: UUID,
        parent_id: UUID | None,
        role: Role,
        depth: int,
        text: str,
        lang: str,
        user_id: UUID | None,
        client_id: UUID | None,
        frontend_message_id: str | None,
        created_at: datetime,
        synthetic: bool,
        model_name: str | None,
    ):
        self.id = id
        self.parent_id = parent_id
        self.role = role
        self.depth = depth
        self.text = text
        self.lang = lang
        self.user_id = user_id
        self.client_id = client_id
        self.frontend_message_id = frontend_message_id
        self.created_at = created_at
        self.synthetic = synthetic
        self.model_name = model_name
        self.children: list[UUID] = []
        self.review_count = 0
        # None = undecided (or never reviewed: late replies), True/False = decided.
        self.review_result: bool | None = None
        self.review_score: float | None = None
        # Task-based reviews by reviewer, in submission order; they decide acceptance.
        self.reviews: dict[UUID | None, dict[str, float]] = {}
        # Free and report labels: the latest per user (OA overwrites them too).
        self.free_labels: dict[UUID | None, dict[str, float]] = {}
        self.deleted = False
        # Purged by a moderator (ConversationTree.MessagesPurged): deleted for good, text gone.
        self.purged = False
        # Images attached to it (ConversationTree.ImagesAttached), in attachment order.
        self.images: list[ImageRef] = []
        self.edited = False
        self.revision = 0
        self.emojis: dict[str, set[UUID | None]] = {}
        # Rankings of this message's children: (ranker, ranked ids best first, not_rankable).
        self.rankings: list[tuple[UUID | None, list[UUID], bool]] = []
        self.ranking_count = 0
        self.rank: int | None = None

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    @property
    def under_review(self) -> bool:
        return self.review_result is None and not self.deleted

    def emoji_count(self, emoji: str) -> int:
        return len(self.emojis.get(emoji, ()))

    def emoji_counts(self) -> dict[str, int]:
        return {name: len(users) for name, users in self.emojis.items() if users}

    def __repr__(self) -> str:
        return f"Message({self.id}, {self.role}, depth={self.depth}, review={self.review_result})"
