"""Commands that move a tree or moderate its messages: activation, scoring retries,
halting, deletion, edits and emojis.

A command on a message finds its tree in the message index (from the log) when the
caller does not name it: a write never depends on how far a read model has got."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from domain.model.actor import Actor
from domain.model.tree import ConversationTree
from domain.service.message_index import MessageIndexCommands


class ModerationCommands(MessageIndexCommands):
    def _on_tree(self, tree_id: UUID, fn: Callable[[ConversationTree], Any]) -> int | None:
        """Apply ``fn`` to the tree; the log position of what it recorded (None: nothing)."""
        return self.run((tree_id,), lambda uow: fn(uow.get(ConversationTree, tree_id)))[1]

    def _on_message(
        self, tree_id: UUID | None, message_id: UUID, fn: Callable[[ConversationTree], Any]
    ) -> int | None:
        """``_on_tree`` on the message's tree: ``tree_id``, or the message index's."""
        return self._on_tree(tree_id or self.tree_of_message(message_id), fn)

    def activate_tree(self, *, tree_id: UUID, reason: str = "prompt_lottery") -> int | None:
        return self._on_tree(tree_id, lambda t: t.activate(config=self.config, reason=reason))

    def retry_scoring(self, *, tree_id: UUID) -> int | None:
        return self._on_tree(tree_id, lambda t: t.retry_scoring(config=self.config))

    def halt_tree(self, *, tree_id: UUID, actor: Actor, reason: str = "moderator") -> int | None:
        return self._on_tree(tree_id, lambda t: t.halt(actor=actor, reason=reason))

    def resume_tree(self, *, tree_id: UUID, actor: Actor) -> int | None:
        return self._on_tree(tree_id, lambda t: t.resume(actor=actor, config=self.config))

    def delete_message(
        self, *, message_id: UUID, actor: Actor, tree_id: UUID | None = None
    ) -> int | None:
        return self._on_message(
            tree_id,
            message_id,
            lambda t: t.delete_message(message_id=message_id, actor=actor, config=self.config),
        )

    def undelete_message(
        self, *, message_id: UUID, actor: Actor, tree_id: UUID | None = None
    ) -> int | None:
        return self._on_message(
            tree_id,
            message_id,
            lambda t: t.undelete_message(message_id=message_id, actor=actor, config=self.config),
        )

    def edit_message(
        self, *, message_id: UUID, text: str, actor: Actor, tree_id: UUID | None = None
    ) -> int | None:
        return self._on_message(
            tree_id,
            message_id,
            lambda t: t.edit_message(
                message_id=message_id, text=text, actor=actor, config=self.config
            ),
        )

    def toggle_emoji(
        self,
        *,
        message_id: UUID,
        emoji: str,
        actor: Actor,
        op: str = "toggle",
        tree_id: UUID | None = None,
    ) -> int | None:
        return self._on_message(
            tree_id,
            message_id,
            lambda t: t.toggle_emoji(
                message_id=message_id, emoji=emoji, actor=actor, config=self.config, op=op
            ),
        )
