"""DataEngine: the application service over trees, users (with their tasks), API clients
and the models registry. Every write in the system is one of its methods.

Its commands are grouped by concern, one class each, and DataEngine inherits them all
(as eventsourcing's examples put commands on the application class):

- domain.service.base: run, save, locks and aggregate reads (the plumbing);
- domain.service.unit_of_work: UnitOfWork, Outcome, message ids;
- domain.service.tree_commands: prompts, replies, labels, rankings;
- domain.service.message_index: which tree holds a message, from the log;
- domain.service.oa_import: importing Open-Assistant export trees;
- domain.service.task_commands: issuing, acknowledging, skipping, expiring tasks;
- domain.service.moderation: activation, halting, deletion, edits, emojis;
- domain.service.purges: moderators' purges and flagged messages;
- domain.service.user_commands: API clients and users;
- domain.service.model_commands: the models registry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.model.actor import Actor
from domain.model.api_client import new_api_key
from domain.model.errors import TreeNotFoundError
from domain.model.tree import ConversationTree
from domain.service.model_commands import ModelCommands
from domain.service.moderation import ModerationCommands
from domain.service.oa_import import ImportCommands
from domain.service.purges import PurgeCommands
from domain.service.task_commands import TaskCommands
from domain.service.tree_commands import TreeCommands
from domain.service.unit_of_work import Outcome, UnitOfWork, message_id_for
from domain.service.user_commands import ClientCommands, UserCommands

V = TypeVar("V")


class DataEngine(
    TreeCommands,
    ImportCommands,
    TaskCommands,
    ModerationCommands,
    PurgeCommands,
    ClientCommands,
    UserCommands,
    ModelCommands,
):
    def get_tree(
        self, tree_id: UUID, *, version: int | None = None, as_of: datetime | None = None
    ) -> ConversationTree:
        """The tree now, or as it was at a version or a moment (a private copy)."""
        if as_of is not None:
            version = self.version_at(tree_id, as_of)
        if version is None:
            return self._read(ConversationTree, tree_id)
        try:
            tree: Any = self.repository.get(tree_id, version=version)
        except AggregateNotFoundError:
            raise TreeNotFoundError(f"tree {tree_id} has no version {version}") from None
        if not isinstance(tree, ConversationTree):
            raise TreeNotFoundError(f"tree {tree_id} not found")
        return tree

    def view_tree(self, tree_id: UUID, view: Callable[[ConversationTree], V]) -> V:
        """``view(tree)`` of the tree now, under the tree's lock and without a copy: for a
        read that builds its own plain data (a page), where get_tree's deepcopy is most of
        the cost. ``view`` must not change the tree nor keep a reference to it."""
        with self._locked((tree_id,)):
            return view(UnitOfWork(self.repository).get(ConversationTree, tree_id))

    def version_at(self, tree_id: UUID, moment: datetime) -> int:
        version = 0
        for event in self.events.get(tree_id):
            assert isinstance(event, ConversationTree.Event)
            if event.timestamp > moment:
                break
            version = event.originator_version
        if version == 0:
            raise TreeNotFoundError(f"tree {tree_id} did not exist at {moment.isoformat()}")
        return version


__all__ = ["Actor", "DataEngine", "Outcome", "UnitOfWork", "message_id_for", "new_api_key"]
