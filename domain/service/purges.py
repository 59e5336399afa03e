"""Moderators' purges and flagged messages (OA's /admin/purge_user and flagged_messages).

A purge is recorded per tree as ``ConversationTree.MessagesPurged`` (domain.model.
tree_purge): the log is never rewritten. Which trees hold a user's messages is a read
(the caller passes them, from projections.moderation_queries); which messages go is the
rule ``purge_selection``, decided again on each tree under its lock, so a message written
after the read is caught when it falls in the purge. A preview runs the same selection
and records nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from domain.model.actor import Actor
from domain.model.errors import UserNotFoundError
from domain.model.tree import ConversationTree
from domain.model.tree_purge import purge_selection
from domain.model.user import User
from domain.service.message_index import MessageIndexCommands
from domain.service.unit_of_work import UnitOfWork


@dataclass
class PurgeOutcome:
    """What a purge removed (or would remove, on a preview), per tree."""

    purged: dict[UUID, list[UUID]] = field(default_factory=dict)
    position: int | None = None  # the log position to catch up with (None: nothing recorded)

    @property
    def message_ids(self) -> list[UUID]:
        return [i for ids in self.purged.values() for i in ids]


class PurgeCommands(MessageIndexCommands):
    def purge_user_messages(
        self,
        *,
        user_id: UUID,
        tree_ids: Iterable[UUID],
        actor: Actor,
        include_prompts: bool = False,
        min_date: datetime | None = None,
        max_date: datetime | None = None,
        preview: bool = True,
    ) -> PurgeOutcome:
        """Purge the user's messages (and the replies below them) in these trees."""
        if self._peek(User, user_id) is None:
            raise UserNotFoundError(f"user {user_id} not found")

        outcome = PurgeOutcome()
        for tree_id in dict.fromkeys(tree_ids):

            def command(uow: UnitOfWork, tree_id: UUID = tree_id) -> list[UUID]:
                tree = uow.get(ConversationTree, tree_id)
                ids = purge_selection(
                    tree,
                    user_id,
                    include_prompts=include_prompts,
                    min_date=min_date,
                    max_date=max_date,
                )
                if ids and not preview:
                    tree.purge_messages(message_ids=ids, actor=actor, config=self.config)
                return ids

            ids, position = self.run((tree_id,), command)
            if ids:
                outcome.purged[tree_id] = ids
            if position is not None:
                outcome.position = position
        return outcome

    def purge_user(
        self,
        *,
        user_id: UUID,
        tree_ids: Iterable[UUID],
        actor: Actor,
        ban: bool = True,
        preview: bool = True,
    ) -> PurgeOutcome:
        """Purge every message the user wrote, prompts included (their whole trees go);
        ``ban`` also disables the user and marks it deleted, as OA's purge_user does."""
        outcome = self.purge_user_messages(
            user_id=user_id, tree_ids=tree_ids, actor=actor, include_prompts=True, preview=preview
        )
        if ban and not preview:

            def command(uow: UnitOfWork) -> None:
                uow.get(User, user_id).update_profile(enabled=False, deleted=True)

            position = self.run((user_id,), command)[1]
            if position is not None:
                outcome.position = position
        return outcome

    def process_flagged_message(self, *, message_id: UUID, actor: Actor) -> int | None:
        """Mark the reports on a message dealt with; the log position of the fact."""
        tree_id = self.tree_of_message(message_id)
        return self.run(
            (tree_id,),
            lambda uow: uow.get(ConversationTree, tree_id).process_reports(
                message_id=message_id, actor=actor
            ),
        )[1]

    def delete_user_messages(
        self, *, messages: Iterable[tuple[UUID, UUID]], actor: Actor
    ) -> int | None:
        """OA's DELETE /users/{id}/messages: delete each (tree id, message id), as a
        moderator's deletion (the replies go with it); the log position of the last."""
        position = None
        for tree_id, message_id in messages:

            def command(uow: UnitOfWork, tree_id: UUID = tree_id, m: UUID = message_id) -> None:
                tree = uow.get(ConversationTree, tree_id)
                if not tree.message(m).deleted:  # a reply may have gone with its parent
                    tree.delete_message(message_id=m, actor=actor, config=self.config)

            found = self.run((tree_id,), command)[1]
            position = found if found is not None else position
        return position
