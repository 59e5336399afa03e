"""The ConversationTree aggregate: one tree of messages and its lifecycle.

Every fact is one event nested in the aggregate (its stored topic is
``domain.tree:ConversationTree.<Event>``, see domain.model.topics). Event ``apply``
methods are the only code that changes state; they depend on nothing but the event, so
replay needs no config. The aggregate is put together from one concern per module:

* domain.model.tree_data: the state the events set (declared) and queries over it;
* domain.model.tree_commands: the commands, which run the guards (tree_guards) before
  they trigger anything, so a refused command leaves no trace;
* domain.model.tree_follow_ups: how it records what follows a fact, as decided by the
  pure rules (tree_rules);
* this module: the events, starting a tree and importing one (tree_import reads the file).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.model.actor import SYSTEM, Actor
from domain.model.config import TreeConfig
from domain.model.images import ImageRef, TreeImages
from domain.model.labels import LabelKind
from domain.model.message import Message, Role, check_text
from domain.model.states import TreeState
from domain.model.topics import keep_stored_topics
from domain.model.tree_commands import TreeCommands
from domain.model.tree_import import IMPORT_REASON, ImportedMessage, plan_import
from domain.model.tree_purge import TreePurge


class ConversationTree(TreeCommands, TreePurge, TreeImages, Aggregate):
    class Event(Aggregate.Event):
        user_id: UUID | None
        client_id: UUID | None

    class TreeStarted(Event, Aggregate.Created):
        text: str
        lang: str
        frontend_message_id: str | None
        synthetic: bool
        model_name: str | None
        goal_tree_size: int
        max_depth: int
        max_children_count: int
        origin: str | None
        state: str

        def apply(self, tree: ConversationTree) -> None:
            root = Message(
                id=self.originator_id,
                parent_id=None,
                role=Role.PROMPTER,
                depth=0,
                text=self.text,
                lang=self.lang,
                user_id=self.user_id,
                client_id=self.client_id,
                frontend_message_id=self.frontend_message_id,
                created_at=self.timestamp,
                synthetic=self.synthetic,
                model_name=self.model_name,
            )
            tree.messages = {root.id: root}
            tree.state = TreeState(self.state)
            tree.lang = self.lang
            tree.goal_tree_size = self.goal_tree_size
            tree.max_depth = self.max_depth
            tree.max_children_count = self.max_children_count
            tree.origin = self.origin
            tree.won_lottery_at = None
            tree.halted_from = None

    class ReplyAdded(Event):
        message_id: UUID
        parent_id: UUID
        role: str
        depth: int
        text: str
        lang: str
        frontend_message_id: str | None
        synthetic: bool
        model_name: str | None

        def apply(self, tree: ConversationTree) -> None:
            message = Message(
                id=self.message_id,
                parent_id=self.parent_id,
                role=Role(self.role),
                depth=self.depth,
                text=self.text,
                lang=self.lang,
                user_id=self.user_id,
                client_id=self.client_id,
                frontend_message_id=self.frontend_message_id,
                created_at=self.timestamp,
                synthetic=self.synthetic,
                model_name=self.model_name,
            )
            tree.messages[message.id] = message
            tree.messages[self.parent_id].children.append(message.id)

    class LabelsSubmitted(Event):
        """kind: a review task's labels (they count), free labels or a report."""

        message_id: UUID
        labels: dict[str, float]
        kind: LabelKind
        task_id: UUID | None

        def apply(self, tree: ConversationTree) -> None:
            message = tree.messages[self.message_id]
            if self.kind == LabelKind.TASK:
                message.reviews[self.user_id] = dict(self.labels)
                message.review_count += 1
            else:
                message.free_labels[self.user_id] = dict(self.labels)

    class ReviewDecided(Event):
        message_id: UUID
        accepted: bool
        score: float
        review_count: int

        def apply(self, tree: ConversationTree) -> None:
            message = tree.messages[self.message_id]
            message.review_result = self.accepted
            message.review_score = self.score
            # Equal to the count already applied, except for imported trees, whose
            # individual reviews are not in the file.
            message.review_count = max(message.review_count, self.review_count)

    class RankingSubmitted(Event):
        """A ranking of a parent's replies (best first), with the order they were shown in.

        display_order: the order the ranker saw the replies, for position-bias analyses
        (None: not recorded, as in every ranking stored before class_version 2).
        """

        class_version = 2

        parent_id: UUID
        ranked_message_ids: list[UUID]
        not_rankable: bool
        task_id: UUID | None
        display_order: list[UUID] | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["display_order"] = None

        def apply(self, tree: ConversationTree) -> None:
            parent = tree.messages[self.parent_id]
            parent.rankings.append((self.user_id, list(self.ranked_message_ids), self.not_rankable))
            for child_id in self.ranked_message_ids:
                tree.messages[child_id].ranking_count += 1

    class StateChanged(Event):
        from_state: str
        to_state: str
        reason: str

        def apply(self, tree: ConversationTree) -> None:
            tree.state = TreeState(self.to_state)
            if self.to_state == TreeState.GROWING and tree.won_lottery_at is None:
                tree.won_lottery_at = self.timestamp

    class TreeHalted(StateChanged):
        def apply(self, tree: ConversationTree) -> None:
            tree.halted_from = TreeState(self.from_state)
            tree.state = TreeState.HALTED_BY_MODERATOR

    class TreeResumed(StateChanged):
        def apply(self, tree: ConversationTree) -> None:
            tree.halted_from = None
            tree.state = TreeState(self.to_state)

    class TreeScored(Event):
        """Consensus order (best first) per ranked parent; str(parent id) -> child ids."""

        ranks: dict[str, list[UUID]]

        def apply(self, tree: ConversationTree) -> None:
            for parent_id, order in self.ranks.items():
                parent = tree.messages[UUID(parent_id)]
                position = {child_id: i for i, child_id in enumerate(order)}
                for child_id in parent.children:
                    tree.messages[child_id].rank = position.get(child_id)

    class RanksImported(Event):
        """Ranks taken over from an imported export file (same shape as TreeScored)."""

        ranks: dict[str, list[UUID]]

        def apply(self, tree: ConversationTree) -> None:
            ConversationTree.TreeScored.apply(self, tree)  # type: ignore[arg-type]

    class ScoringFailed(Event):
        error: str

        def apply(self, tree: ConversationTree) -> None:
            pass

    class ImagesAttached(Event):
        """Images on a prompter message: references to stored blobs (domain.model.images)."""

        message_id: UUID
        images: list[ImageRef]

        def apply(self, tree: ConversationTree) -> None:
            message = tree.messages[self.message_id]
            message.images = [*message.images, *self.images]

    class MessageDeleted(Event):
        """message_ids: the message and every descendant that was not deleted yet."""

        message_ids: list[UUID]
        reason: str

        def apply(self, tree: ConversationTree) -> None:
            for message_id in self.message_ids:
                tree.messages[message_id].deleted = True

    class MessageUndeleted(Event):
        """message_ids: the message and its deleted ancestors."""

        message_ids: list[UUID]

        def apply(self, tree: ConversationTree) -> None:
            for message_id in self.message_ids:
                tree.messages[message_id].deleted = False

    class MessagesPurged(Event):
        """A moderator's purge (OA's purge_user): the messages and their replies are gone
        for good. The log keeps what was written; every read model and dataset hides it."""

        message_ids: list[UUID]
        reason: str

        def apply(self, tree: ConversationTree) -> None:
            for message_id in self.message_ids:
                message = tree.messages[message_id]
                message.deleted = message.purged = True
                message.text = ""

    class ReportsProcessed(Event):
        """A moderator has dealt with the reports on a message (OA's flagged message)."""

        message_id: UUID

        def apply(self, tree: ConversationTree) -> None:
            pass

    class MessageEdited(Event):
        message_id: UUID
        text: str
        revision: int

        def apply(self, tree: ConversationTree) -> None:
            message = tree.messages[self.message_id]
            message.text = self.text
            message.edited = True
            message.revision = self.revision

    class EmojiToggled(Event):
        message_id: UUID
        emoji: str
        added: bool

        def apply(self, tree: ConversationTree) -> None:
            users = tree.messages[self.message_id].emojis.setdefault(self.emoji, set())
            if self.added:
                users.add(self.user_id)
            else:
                users.discard(self.user_id)

    # ------------------------------------------------------------------ creation
    @classmethod
    def start(
        cls,
        *,
        message_id: UUID,
        text: str,
        lang: str,
        actor: Actor,
        config: TreeConfig,
        goal_tree_size: int | None = None,
        frontend_message_id: str | None = None,
        synthetic: bool = False,
        model_name: str | None = None,
        origin: str | None = None,
    ) -> ConversationTree:
        check_text(text, config.message_size_limit)
        return cls._create(
            cls.TreeStarted,
            id=message_id,
            user_id=actor.user_id,
            client_id=actor.client_id,
            text=text,
            lang=lang,
            frontend_message_id=frontend_message_id,
            synthetic=synthetic,
            model_name=model_name,
            goal_tree_size=goal_tree_size or config.goal_tree_size,
            max_depth=config.max_tree_depth,
            max_children_count=config.max_children_count,
            origin=origin,
            state=TreeState.INITIAL_PROMPT_REVIEW.value,
        )

    @classmethod
    def import_tree(
        cls,
        export: dict[str, Any],
        *,
        config: TreeConfig,
        state: TreeState | str | None = None,
        origin: str | None = None,
    ) -> ConversationTree:
        """A tree rebuilt from an Open-Assistant ``ExportMessageTree``: records what
        domain.model.tree_import reads from the file, and runs none of the follow-ups."""
        plan = plan_import(export, state=state, origin=origin)
        root, *replies = plan.messages
        tree = cls._create(
            cls.TreeStarted,
            id=root.id,
            timestamp=root.created_at,
            user_id=root.user_id,
            client_id=None,
            text=root.text,
            lang=root.lang,
            frontend_message_id=None,
            synthetic=root.synthetic,
            model_name=root.model_name,
            goal_tree_size=config.goal_tree_size,
            max_depth=config.max_tree_depth,
            max_children_count=config.max_children_count,
            origin=plan.origin,
            state=plan.start.value,
        )
        tree._record_outcomes(root)
        for reply in replies:
            assert reply.parent_id is not None
            tree._record(
                cls.ReplyAdded,
                Actor(reply.user_id),
                timestamp=reply.created_at,
                message_id=reply.id,
                parent_id=reply.parent_id,
                role=reply.role.value,
                depth=reply.depth,
                text=reply.text,
                lang=reply.lang,
                frontend_message_id=None,
                synthetic=reply.synthetic,
                model_name=reply.model_name,
            )
            tree._record_outcomes(reply)
        if plan.ranks:
            tree._record(cls.RanksImported, SYSTEM, ranks=plan.ranks)
        for step in plan.moves:
            tree.change_state(step, IMPORT_REASON, SYSTEM)
        return tree

    def _record_outcomes(self, imported: ImportedMessage) -> None:
        """What the file says became of a message: its review, emoji clicks, deletion."""
        if imported.review is not None:
            # The file has no score: a decided review counts as fully for or against.
            accepted, review_count = imported.review
            self._record(
                self.ReviewDecided,
                SYSTEM,
                message_id=imported.id,
                accepted=accepted,
                score=1.0 if accepted else 0.0,
                review_count=review_count,
            )
        if imported.images:
            self._record(
                self.ImagesAttached,
                Actor(imported.user_id),
                message_id=imported.id,
                images=imported.images,
            )
        for emoji, clicker in imported.clicks:
            self._record(
                self.EmojiToggled, Actor(clicker), message_id=imported.id, emoji=emoji, added=True
            )
        if imported.deleted:
            self._record(
                self.MessageDeleted, SYSTEM, message_ids=[imported.id], reason=IMPORT_REASON
            )


# Stored under its pre-move topics (domain.model.topics).
keep_stored_topics(ConversationTree)
