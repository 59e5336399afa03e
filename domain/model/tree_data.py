"""What a conversation tree knows: the attributes its events set, declared in one place.

``TreeData`` is the state half of the ConversationTree aggregate (domain.model.tree): the
aggregate inherits it, its event ``apply`` methods are the only code that assigns these
attributes, and the rules (domain.model.tree_rules, tree_guards) read a tree through this
type, so they depend on the tree's state, never on the aggregate's commands. The
annotations declare; they are no dataclass fields (eventsourcing would turn annotations
on the aggregate class itself into ``__init__`` parameters).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.model.errors import MessageNotFoundError
from domain.model.message import Message
from domain.model.states import TreeState

if TYPE_CHECKING:
    # Type checkers see the aggregate's id, version and trigger_event; at run time the
    # aggregate class itself brings them (TreeData is mixed into it).
    from eventsourcing.domain import Aggregate as _AggregateBase
else:
    _AggregateBase = object


class TreeData(_AggregateBase):
    # Every message by id, the root first; a message's children are in order of arrival.
    messages: dict[UUID, Message]
    state: TreeState
    lang: str
    goal_tree_size: int
    max_depth: int
    max_children_count: int
    origin: str | None
    # When the tree first started growing (None: it never won the prompt lottery).
    won_lottery_at: datetime | None
    # The state a moderator halted the tree in (None: not halted).
    halted_from: TreeState | None

    @property
    def root(self) -> Message:
        return self.messages[self.id]

    def message(self, message_id: UUID) -> Message:
        try:
            return self.messages[message_id]
        except KeyError:
            raise MessageNotFoundError(
                f"message {message_id} not found in tree {self.id}"
            ) from None

    def as_dict(self) -> dict[str, Any]:
        """A plain view of the tree (for audit views and tests)."""
        return {
            "id": str(self.id),
            "state": self.state.value,
            "lang": self.lang,
            "goal_tree_size": self.goal_tree_size,
            "version": self.version,
            "messages": [message_dict(m) for m in self.messages.values()],
        }


def message_dict(m: Message) -> dict[str, Any]:
    return {
        "id": str(m.id),
        "parent_id": str(m.parent_id) if m.parent_id else None,
        "role": m.role.value,
        "depth": m.depth,
        "text": m.text,
        "lang": m.lang,
        "user_id": str(m.user_id) if m.user_id else None,
        "synthetic": m.synthetic,
        "model_name": m.model_name,
        "review_count": m.review_count,
        "review_result": m.review_result,
        "deleted": m.deleted,
        "edited": m.edited,
        "ranking_count": m.ranking_count,
        "rank": m.rank,
        "emojis": m.emoji_counts(),
        "children": [str(c) for c in m.children],
    }
