"""The message index: which tree holds a message, recorded in the log itself.

One small aggregate per message id (eventsourcing's index pattern, as in its content
management example), created in the same transaction as the event that adds the message
(TreeStarted, ReplyAdded, TreeImported). A write that needs a message's tree (a label, a
report) reads it here, from the log, so it never waits for a read model; and because the
index id is derived from the message id, a second tree claiming the same message id
conflicts on version 1 of the same index aggregate: message ids are unique across trees
(as in Open-Assistant, where the message id is the table's primary key).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.model.index_entry import created, derived_id


def index_id_for(message_id: UUID) -> UUID:
    return derived_id(
        "/message-index/", message_id
    )  # uuid5(NAMESPACE_URL, f"/message-index/{message_id}")


class MessageIndex(Aggregate):
    # one event, never another: a cached copy is current (domain.service.indexes.entry)
    written_once = True

    message_id: UUID
    tree_id: UUID

    class MessageIndexed(Aggregate.Created):
        message_id: UUID
        tree_id: UUID

        def apply(self, index: MessageIndex) -> None:
            index.message_id = self.message_id
            index.tree_id = self.tree_id

    @classmethod
    def record(
        cls, *, message_id: UUID, tree_id: UUID, timestamp: datetime | None = None
    ) -> MessageIndex:
        """The entry for ``message_id``; ``timestamp``: the indexed event's (now when None)."""
        return created(
            cls,
            cls.MessageIndexed,
            index_id_for(message_id),
            timestamp,
            message_id=message_id,
            tree_id=tree_id,
        )
