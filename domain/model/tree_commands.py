"""The ConversationTree's commands: guard, record the fact, record what follows.

Each command runs its guards (domain.model.tree_guards) first and only then triggers
events, so a refused command leaves no trace (eventsourcing keeps attribute changes made
before a failing apply). Follow-ups are decided by the rules and recorded by
domain.model.tree_follow_ups. Mixed into the aggregate (domain.model.tree), which
defines the events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar
from uuid import UUID

from domain.model import tree_guards as guards
from domain.model import tree_rules as rules
from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.errors import InvalidStateTransitionError
from domain.model.labels import LabelKind
from domain.model.message import SYSTEM_EMOJIS, Message, Role, check_text
from domain.model.states import TreeState
from domain.model.tree_follow_ups import TreeFollowUps

if TYPE_CHECKING:
    from domain.model.tree import ConversationTree as Tree

S = TreeState


class TreeCommands(TreeFollowUps):
    if TYPE_CHECKING:
        # The events, as the aggregate (domain.model.tree) defines them.
        ReplyAdded: ClassVar[type[Tree.ReplyAdded]]
        LabelsSubmitted: ClassVar[type[Tree.LabelsSubmitted]]
        RankingSubmitted: ClassVar[type[Tree.RankingSubmitted]]
        TreeResumed: ClassVar[type[Tree.TreeResumed]]
        MessageUndeleted: ClassVar[type[Tree.MessageUndeleted]]
        MessageEdited: ClassVar[type[Tree.MessageEdited]]

    # ------------------------------------------------------------ contributions
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
        guards.check_reply(self, parent, actor, config, role)
        check_text(text, config.message_size_limit)
        self._record(
            self.ReplyAdded,
            actor,
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
        kind: LabelKind | str = LabelKind.TASK,
        task_id: UUID | None = None,
        valid_labels: frozenset[str] | None = None,
        mandatory_labels: frozenset[str] | None = None,
    ) -> None:
        message = self.message(message_id)
        label_kind = guards.label_kind(kind)
        guards.check_labels(
            self, message, labels, actor, label_kind, valid_labels, mandatory_labels
        )
        self._record(
            self.LabelsSubmitted,
            actor,
            message_id=message.id,
            labels={k: float(v) for k, v in labels.items()},
            kind=label_kind,
            task_id=task_id,
        )
        if label_kind is LabelKind.REPORT:
            self._set_emoji(message, "red_flag", True, actor, config)
        elif label_kind is LabelKind.TASK:
            self._decide_review(message, config)

    def submit_ranking(
        self,
        *,
        parent_id: UUID,
        ranked_message_ids: list[UUID],
        actor: Actor,
        config: TreeConfig,
        not_rankable: bool = False,
        task_id: UUID | None = None,
        display_order: list[UUID] | None = None,
    ) -> None:
        """Rank the replies of ``parent_id``, best first. ``display_order``: the order the
        replies were shown to the ranker (for position-bias analyses); when given, the same
        replies, each once."""
        parent = self.message(parent_id)
        guards.check_ranking(self, parent, ranked_message_ids, actor, config, display_order)
        self._record(
            self.RankingSubmitted,
            actor,
            parent_id=parent.id,
            ranked_message_ids=list(ranked_message_ids),
            not_rankable=not_rankable,
            task_id=task_id,
            display_order=None if display_order is None else list(display_order),
        )
        self._score(config)

    # ------------------------------------------------------------ lifecycle
    def activate(self, *, config: TreeConfig, reason: str = "prompt_lottery") -> None:
        """Draw a waiting prompt (lottery) or a backlog tree into its working phase."""
        move = rules.activation_move(self, config, reason)
        if move is None:
            raise InvalidStateTransitionError(
                f"tree {self.id} is {self.state.value}; only waiting prompts and backlog trees "
                "can be activated"
            )
        self._move(move)
        if move.to_state is S.GROWING:
            # A goal of 1 is met by the accepted root alone; no later review would notice.
            self._grow(config)
        elif move.to_state is S.RANKING:
            self._score(config)

    def retry_scoring(self, *, config: TreeConfig) -> None:
        guards.check_retry_scoring(self)
        self._score(config)

    # ------------------------------------------------------------ moderation
    def halt(self, *, actor: Actor, reason: str = "moderator") -> None:
        guards.check_halt(self)
        self.change_state(S.HALTED_BY_MODERATOR, reason, actor)

    def resume(self, *, actor: Actor, config: TreeConfig) -> None:
        guards.check_resume(self)
        self._record(
            self.TreeResumed,
            actor,
            from_state=self.state.value,
            to_state=rules.resume_target(self).value,
            reason="moderator_resume",
        )
        move = rules.resumed_prompt_move(self)
        if move is not None:
            self._move(move)
        self._grow(config)

    def delete_message(
        self, *, message_id: UUID, actor: Actor, config: TreeConfig, reason: str = "moderator"
    ) -> list[UUID]:
        return self._delete(self.message(message_id), actor, config, reason)

    def undelete_message(self, *, message_id: UUID, actor: Actor, config: TreeConfig) -> list[UUID]:
        revived = [m for m in rules.path_to_root(self, self.message(message_id)) if m.deleted]
        guards.check_undelete(self, revived, config)
        if revived:
            self._record(self.MessageUndeleted, actor, message_ids=[m.id for m in revived])
            # Restored accepted replies count towards the goal size again.
            self._grow(config)
        return [m.id for m in revived]

    def edit_message(
        self, *, message_id: UUID, text: str, actor: Actor, config: TreeConfig
    ) -> None:
        message = self.message(message_id)
        guards.check_edit(message, text, config)
        self._record(
            self.MessageEdited,
            actor,
            message_id=message.id,
            text=text,
            revision=message.revision + 1,
        )

    def toggle_emoji(
        self, *, message_id: UUID, emoji: str, actor: Actor, config: TreeConfig, op: str = "toggle"
    ) -> None:
        message = self.message(message_id)
        guards.check_emoji(emoji, op)
        for name, added in rules.emoji_changes(message, emoji, actor, op):
            self._set_emoji(message, name, added, actor, config)

    def record_skip(
        self, *, message_id: UUID, emoji: str, actor: Actor, config: TreeConfig
    ) -> None:
        """A user skipped a task about this message; excludes it for them, feeds auto-mod."""
        assert emoji in SYSTEM_EMOJIS, emoji
        message = self.message(message_id)
        if actor.user_id not in message.emojis.get(emoji, ()):
            self._set_emoji(message, emoji, True, actor, config)
