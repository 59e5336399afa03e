"""Purging a user's messages from a tree, and closing a message's reports.

OA's purge deletes rows from its database. Here the log is never rewritten: a purge is
one more fact, ``ConversationTree.MessagesPurged``, naming every message it removes (the
chosen messages and all the replies below them). The aggregate then holds them deleted,
marked purged and without text; the read models and datasets hide them the same way,
and an undelete cannot bring them back (tree_guards.check_undelete).

``purge_selection`` is the rule that picks a user's messages (pure: no event); the
aggregate method records the purge and what follows from it, as a deletion does.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from domain.model import tree_rules as rules
from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.states import TreeState
from domain.model.tree_data import TreeData
from domain.model.tree_follow_ups import TreeFollowUps

if TYPE_CHECKING:
    from domain.model.tree import ConversationTree as Tree

PURGE_REASON = "purge"


def purge_selection(
    tree: TreeData,
    user_id: UUID,
    *,
    include_prompts: bool,
    min_date: datetime | None = None,
    max_date: datetime | None = None,
) -> list[UUID]:
    """The user's messages in this tree (written between the dates, when given) and every
    reply below them, not purged yet, parents first. Without ``include_prompts`` a prompt
    the user wrote stays (OA's ``purge_initial_prompts=false``), its replies do not."""
    chosen: list[UUID] = []
    seen: set[UUID] = set()
    for message in tree.messages.values():
        if message.user_id != user_id or message.id in seen:
            continue
        if message.is_root and not include_prompts:
            continue
        if min_date is not None and message.created_at < min_date:
            continue
        if max_date is not None and message.created_at > max_date:
            continue
        for below in rules.subtree(tree, message):
            if below.id not in seen:
                seen.add(below.id)
                if not below.purged:
                    chosen.append(below.id)
    return chosen


class TreePurge(TreeFollowUps):
    if TYPE_CHECKING:
        MessagesPurged: ClassVar[type[Tree.MessagesPurged]]
        ReportsProcessed: ClassVar[type[Tree.ReportsProcessed]]

    def purge_messages(
        self,
        *,
        message_ids: list[UUID],
        actor: Actor,
        config: TreeConfig,
        reason: str = PURGE_REASON,
    ) -> list[UUID]:
        """Purge the messages and their replies; what was purged (empty: nothing new).

        What follows is what follows a deletion: a growing tree may stop growing, a tree
        without its prompt halts, a ranking may be complete without the purged replies."""
        ids: list[UUID] = []
        for message_id in message_ids:
            for below in rules.subtree(self, self.message(message_id)):
                if not below.purged and below.id not in ids:
                    ids.append(below.id)
        if not ids:
            return []
        self._record(self.MessagesPurged, actor, message_ids=ids, reason=reason)
        if self.state is TreeState.GROWING:
            self._grow(config)
        elif (move := rules.orphan_move(self)) is not None:
            self._move(move)
        elif self.state is TreeState.RANKING:
            self._score(config)
        return ids

    def process_reports(self, *, message_id: UUID, actor: Actor) -> None:
        """A moderator has dealt with the message's reports (OA's flagged message)."""
        self.message(message_id)  # MessageNotFoundError for a message of another tree
        self._record(self.ReportsProcessed, actor, message_id=message_id)


# ------------------------------------------------------------------ reading the log
# The log keeps a purged message's text; what reads the log for people (history, events,
# a tree as it was) hides it with these.
_TEXT_OF = {
    "TreeStarted": "originator_id",
    "ReplyAdded": "message_id",
    "MessageEdited": "message_id",
}


def purged_in(events: Iterable[Any]) -> set[UUID]:
    """The messages a tree's events purge (MessagesPurged, by name: views or events)."""
    return {
        UUID(str(i)) for e in events if type(e).__name__ == "MessagesPurged" for i in e.message_ids
    }


def hide_purged(event: Any, data: dict[str, Any], purged: set[UUID]) -> dict[str, Any]:
    """``data`` (the event's fields, as shown) with the text blanked when the event wrote
    a purged message's text."""
    key = _TEXT_OF.get(type(event).__name__)
    if key is not None and "text" in data and UUID(str(getattr(event, key))) in purged:
        return {**data, "text": ""}
    return data
