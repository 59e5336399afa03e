"""Which tree holds a message, from the log: the index aggregate's commands and reads.

Whatever command adds a message (a prompt, a reply, an imported tree), its index entry
is claimed in the same unit of work (``_before_save``, run before every save), so a label
or report finds its tree without asking a read model, and two trees never hold the same
message id. Logs written before the index existed are indexed once when the application
is opened (``index_messages``, idempotent: domain.service.indexes).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.model.errors import MessageAlreadyExistsError, MessageNotFoundError
from domain.model.message_index import MessageIndex, index_id_for
from domain.model.tree import ConversationTree
from domain.service.base import ServiceBase
from domain.service.indexes import backfill, entry
from domain.service.unit_of_work import UnitOfWork

# The events that create a tree (a new prompt, an imported tree).
_TREE_CREATED = (get_topic(ConversationTree.TreeStarted),)


def claim(
    uow: UnitOfWork,
    tree_id: UUID,
    message_ids: Iterable[UUID],
    timestamp: datetime | None = None,
) -> list[MessageIndex]:
    """Record that ``tree_id`` holds these messages, in the command's unit of work.

    A first attempt records without looking (a read per message saved): if another tree
    holds one of them, saving conflicts on the index entry's first version and the
    command runs again, and that attempt looks and refuses."""
    ids = list(message_ids)
    if uow.attempt > 0:
        for message_id in ids:
            found = uow.find(MessageIndex, index_id_for(message_id))
            if found is not None and found.tree_id != tree_id:
                raise MessageAlreadyExistsError(
                    f"message {message_id} already exists in tree {found.tree_id}"
                )
        ids = [i for i in ids if index_id_for(i) not in uow.loaded]
    recorded = [
        MessageIndex.record(message_id=i, tree_id=tree_id, timestamp=timestamp) for i in ids
    ]
    for new in recorded:
        uow.add(new)
    return recorded


def new_messages(uow: UnitOfWork) -> list[tuple[UUID, UUID, datetime]]:
    """(tree id, message id, when) of every message the unit of work is about to add."""
    found = []
    for aggregate in list(uow.loaded.values()):
        if isinstance(aggregate, ConversationTree) and aggregate.pending_events:
            for event in aggregate.pending_events:
                if isinstance(event, ConversationTree.TreeStarted):
                    found.append((aggregate.id, aggregate.id, event.timestamp))
                elif isinstance(event, ConversationTree.ReplyAdded):
                    found.append((aggregate.id, event.message_id, event.timestamp))
    return found


class MessageIndexCommands(ServiceBase):
    def _before_save(self, uow: UnitOfWork) -> list[Any]:
        added = super()._before_save(uow)
        by_tree: dict[UUID, list[UUID]] = {}
        when: dict[UUID, datetime] = {}  # stamped as the tree's last new message (one clock)
        for tree_id, message_id, timestamp in new_messages(uow):
            by_tree.setdefault(tree_id, []).append(message_id)
            when[tree_id] = timestamp
        for tree_id, message_ids in by_tree.items():
            added += claim(uow, tree_id, message_ids, when[tree_id])
        return added

    def tree_of_message(self, message_id: UUID) -> UUID:
        """The tree holding a message, from the log (MessageNotFoundError when none does)."""
        found = entry(self, MessageIndex, index_id_for(message_id))
        if found is not None:
            return found.tree_id
        raise MessageNotFoundError(f"message {message_id} not found")

    def index_messages(self, batch_size: int = 500) -> int:
        """Index the messages of trees written before the index existed; returns how many
        trees it indexed (0 on a log that needs nothing, after one indexed read).

        The first tree of the log is indexed last, so "the first tree is indexed" means
        every tree is, even after an interrupted run: that one read is the check."""
        return backfill(
            self,
            topics=_TREE_CREATED,
            key=lambda notification: UUID(str(notification.originator_id)),
            indexed=lambda tree_id: entry(self, MessageIndex, index_id_for(tree_id)) is not None,
            index=_index,
            batch_size=batch_size,
        )


def _index(uow: UnitOfWork, tree_ids: list[UUID]) -> None:
    for tree_id in tree_ids:
        tree = uow.get(ConversationTree, tree_id)
        for message_id in tree.messages:
            if uow.find(MessageIndex, index_id_for(message_id)) is None:
                uow.add(MessageIndex.record(message_id=message_id, tree_id=tree_id))
