"""The ConversationTree aggregate: one tree of messages and its lifecycle.

Every fact is one event nested in the aggregate. Public command methods validate first
and only then trigger events, so a refused command leaves no trace (eventsourcing keeps
attribute changes made before a failing apply). Event ``apply`` methods are the only
code that changes state; they depend on nothing but the event, so replay needs no config.
Rules that decide follow-up events (acceptance, state moves, scoring, auto-moderation)
live in ``domain.model.tree_rules``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.model import tree_rules as rules
from domain.model.actor import SYSTEM, Actor
from domain.model.config import TreeConfig
from domain.model.errors import (
    EmojiOpUnsupportedError,
    InvalidStateTransitionError,
    MessageDeletedError,
    MessageNotFoundError,
    TreeInAbortedStateError,
)
from domain.model.message import SYSTEM_EMOJIS, USER_EMOJIS, Message, Role, check_text
from domain.model.states import HALTABLE_STATES, REPLY_STATES, TreeState, is_allowed
from domain.model.topics import keep_stored_topics


class ConversationTree(Aggregate):
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
        """kind: "task" (a review that counts), "free" or "report"."""

        message_id: UUID
        labels: dict[str, float]
        kind: str
        task_id: UUID | None

        def apply(self, tree: ConversationTree) -> None:
            message = tree.messages[self.message_id]
            if self.kind == "task":
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
        parent_id: UUID
        ranked_message_ids: list[UUID]
        not_rankable: bool
        task_id: UUID | None

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

    # ------------------------------------------------------------------ commands
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
        """A tree rebuilt from an Open-Assistant ``ExportMessageTree`` (see domain.model.tree_import)."""
        from domain.model.tree_import import import_tree

        return import_tree(cls, export, config=config, state=state, origin=origin)

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

    def add_reply(
        self,
        *,
        message_id: UUID,
        parent_id: UUID,
        text: str,
        actor: Actor,
        config: TreeConfig,
        role: Role | str | None = None,
        lang: str | None = None,
        frontend_message_id: str | None = None,
        synthetic: bool = False,
        model_name: str | None = None,
    ) -> Message:
        parent = self.message(parent_id)
        if self.state not in REPLY_STATES:
            raise TreeInAbortedStateError(
                f"tree {self.id} is in state {self.state.value} and takes no replies"
            )
        rules.check_reply(self, parent, actor, config, role)
        check_text(text, config.message_size_limit)
        self.trigger_event(
            self.ReplyAdded,
            user_id=actor.user_id,
            client_id=actor.client_id,
            message_id=message_id,
            parent_id=parent.id,
            role=parent.role.reply_role.value,
            depth=parent.depth + 1,
            text=text,
            lang=lang or self.lang,
            frontend_message_id=frontend_message_id,
            synthetic=synthetic,
            model_name=model_name,
        )
        return self.messages[message_id]

    def submit_labels(
        self,
        *,
        message_id: UUID,
        labels: dict[str, float],
        actor: Actor,
        config: TreeConfig,
        kind: str = "task",
        task_id: UUID | None = None,
        valid_labels: frozenset[str] | None = None,
        mandatory_labels: frozenset[str] | None = None,
    ) -> None:
        message = self.message(message_id)
        rules.check_labels(self, message, labels, actor, kind, valid_labels, mandatory_labels)
        self.trigger_event(
            self.LabelsSubmitted,
            user_id=actor.user_id,
            client_id=actor.client_id,
            message_id=message.id,
            labels={k: float(v) for k, v in labels.items()},
            kind=kind,
            task_id=task_id,
        )
        if kind == "report":
            self._set_emoji(message, "red_flag", True, actor, config)
        elif kind == "task":
            rules.decide_review(self, message, config)

    def submit_ranking(
        self,
        *,
        parent_id: UUID,
        ranked_message_ids: list[UUID],
        actor: Actor,
        config: TreeConfig,
        not_rankable: bool = False,
        task_id: UUID | None = None,
    ) -> None:
        parent = self.message(parent_id)
        rules.check_ranking(self, parent, ranked_message_ids, actor, config)
        self.trigger_event(
            self.RankingSubmitted,
            user_id=actor.user_id,
            client_id=actor.client_id,
            parent_id=parent.id,
            ranked_message_ids=list(ranked_message_ids),
            not_rankable=not_rankable,
            task_id=task_id,
        )
        rules.check_scoring(self, config)

    def activate(self, *, config: TreeConfig, reason: str = "prompt_lottery") -> None:
        """Draw a waiting prompt (lottery) or a backlog tree into its working phase."""
        if self.state is TreeState.PROMPT_LOTTERY_WAITING:
            self.change_state(TreeState.GROWING, reason, SYSTEM)
            # A goal of 1 is met by the accepted root alone; no later review would notice.
            rules.check_growth_complete(self, config)
        elif self.state is TreeState.BACKLOG_RANKING:
            if rules.rankable_parents(self, config):
                self.change_state(TreeState.RANKING, reason, SYSTEM)
                rules.check_scoring(self, config)
            else:
                self.change_state(TreeState.ABORTED_LOW_GRADE, "nothing_to_rank", SYSTEM)
        else:
            raise InvalidStateTransitionError(
                f"tree {self.id} is {self.state.value}; only waiting prompts and backlog trees "
                "can be activated"
            )

    def retry_scoring(self, *, config: TreeConfig) -> None:
        if self.state is not TreeState.SCORING_FAILED:
            raise InvalidStateTransitionError(
                f"tree {self.id} is {self.state.value}, not scoring_failed"
            )
        rules.check_scoring(self, config)

    def halt(self, *, actor: Actor, reason: str = "moderator") -> None:
        if self.state not in HALTABLE_STATES:
            raise InvalidStateTransitionError(
                f"tree {self.id} in state {self.state.value} cannot be halted"
            )
        self.trigger_event(
            self.TreeHalted,
            user_id=actor.user_id,
            client_id=actor.client_id,
            from_state=self.state.value,
            to_state=TreeState.HALTED_BY_MODERATOR.value,
            reason=reason,
        )

    def resume(self, *, actor: Actor, config: TreeConfig) -> None:
        if self.state is not TreeState.HALTED_BY_MODERATOR:
            raise InvalidStateTransitionError(f"tree {self.id} is {self.state.value}, not halted")
        if self.root.deleted:  # it would work on in review or the lottery with no prompt
            raise MessageDeletedError(f"the prompt of tree {self.id} is deleted; undelete it first")
        target = rules.resume_target(self)
        self.trigger_event(
            self.TreeResumed,
            user_id=actor.user_id,
            client_id=actor.client_id,
            from_state=self.state.value,
            to_state=target.value,
            reason="moderator_resume",
        )
        rules.after_resume(self, config)

    def delete_message(
        self, *, message_id: UUID, actor: Actor, config: TreeConfig, reason: str = "moderator"
    ) -> list[UUID]:
        message = self.message(message_id)
        ids = [m.id for m in rules.subtree(self, message) if not m.deleted]
        if not ids:
            return []
        self.trigger_event(
            self.MessageDeleted,
            user_id=actor.user_id,
            client_id=actor.client_id,
            message_ids=ids,
            reason=reason,
        )
        rules.after_deletion(self, config)
        return ids

    def undelete_message(self, *, message_id: UUID, actor: Actor, config: TreeConfig) -> list[UUID]:
        revived = [m for m in rules.path_to_root(self, self.message(message_id)) if m.deleted]
        rules.check_undelete(self, revived, config)
        if revived:
            self.trigger_event(
                self.MessageUndeleted,
                user_id=actor.user_id,
                client_id=actor.client_id,
                message_ids=[m.id for m in revived],
            )
            rules.after_undeletion(self, config)
        return [m.id for m in revived]

    def edit_message(
        self, *, message_id: UUID, text: str, actor: Actor, config: TreeConfig
    ) -> None:
        message = self.message(message_id)
        if message.deleted:
            raise MessageDeletedError(f"message {message_id} is deleted")
        check_text(text, config.message_size_limit)
        self.trigger_event(
            self.MessageEdited,
            user_id=actor.user_id,
            client_id=actor.client_id,
            message_id=message.id,
            text=text,
            revision=message.revision + 1,
        )

    def toggle_emoji(
        self, *, message_id: UUID, emoji: str, actor: Actor, config: TreeConfig, op: str = "toggle"
    ) -> None:
        message = self.message(message_id)
        if emoji not in USER_EMOJIS:
            raise EmojiOpUnsupportedError(f"unknown emoji {emoji!r}")
        if op not in ("toggle", "add", "remove"):
            raise EmojiOpUnsupportedError(f"unsupported emoji op {op!r}")
        has = actor.user_id in message.emojis.get(emoji, ())
        add = (not has) if op == "toggle" else op == "add"
        if add == has:
            return
        if emoji in ("+1", "-1"):
            if add and message.user_id is not None and message.user_id == actor.user_id:
                return  # OA ignores votes on one's own message
            opposite = "-1" if emoji == "+1" else "+1"
            if add and actor.user_id in message.emojis.get(opposite, ()):
                self._set_emoji(message, opposite, False, actor, config)
        self._set_emoji(message, emoji, add, actor, config)

    def record_skip(
        self, *, message_id: UUID, emoji: str, actor: Actor, config: TreeConfig
    ) -> None:
        """A user skipped a task about this message; excludes it for them, feeds auto-mod."""
        assert emoji in SYSTEM_EMOJIS, emoji
        message = self.message(message_id)
        if actor.user_id not in message.emojis.get(emoji, ()):
            self._set_emoji(message, emoji, True, actor, config)

    # ------------------------------------------------------------------ helpers
    def change_state(self, to_state: TreeState, reason: str, actor: Actor) -> None:
        if not is_allowed(self.state, to_state):
            raise InvalidStateTransitionError(
                f"{self.state.value} -> {to_state.value} is not allowed"
            )
        cls = self.TreeHalted if to_state is TreeState.HALTED_BY_MODERATOR else self.StateChanged
        self.trigger_event(
            cls,
            user_id=actor.user_id,
            client_id=actor.client_id,
            from_state=self.state.value,
            to_state=to_state.value,
            reason=reason,
        )

    def _set_emoji(
        self, message: Message, emoji: str, added: bool, actor: Actor, config: TreeConfig
    ) -> None:
        self.trigger_event(
            self.EmojiToggled,
            user_id=actor.user_id,
            client_id=actor.client_id,
            message_id=message.id,
            emoji=emoji,
            added=added,
        )
        if added:
            rules.auto_moderate(self, message, emoji, config)

    def as_dict(self) -> dict[str, Any]:
        """A plain view of the tree (for audit views and tests)."""
        return {
            "id": str(self.id),
            "state": self.state.value,
            "lang": self.lang,
            "goal_tree_size": self.goal_tree_size,
            "version": self.version,
            "messages": [rules.message_dict(m) for m in self.messages.values()],
        }


# Stored under its pre-move topics (domain.model.topics).
keep_stored_topics(ConversationTree)
