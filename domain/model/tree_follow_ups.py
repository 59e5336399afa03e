"""How the ConversationTree records what follows a fact: it asks the rules, records the answer.

A fact can imply more: a review may decide a message, a decided reply may complete the
tree, a complete tree moves to ranking and, with nothing left to rank, through scoring;
an added red flag may remove a reply. The decisions are pure functions of the tree's
state (domain.model.tree_rules); the methods here are the aggregate's side of each step:
ask, trigger the event(s) the answer names, ask again. Mixed into the aggregate
(domain.model.tree), so every event of a tree is triggered by a ConversationTree method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from domain.model import tree_rules as rules
from domain.model.actor import SYSTEM, Actor
from domain.model.config import TreeConfig
from domain.model.errors import InvalidStateTransitionError
from domain.model.message import Message
from domain.model.states import TreeState, is_allowed
from domain.model.tree_data import TreeData

if TYPE_CHECKING:
    from domain.model.tree import ConversationTree as Tree

S = TreeState


class TreeFollowUps(TreeData):
    if TYPE_CHECKING:
        # The events, as the aggregate (domain.model.tree) defines them.
        ReviewDecided: ClassVar[type[Tree.ReviewDecided]]
        StateChanged: ClassVar[type[Tree.StateChanged]]
        TreeHalted: ClassVar[type[Tree.TreeHalted]]
        TreeScored: ClassVar[type[Tree.TreeScored]]
        ScoringFailed: ClassVar[type[Tree.ScoringFailed]]
        MessageDeleted: ClassVar[type[Tree.MessageDeleted]]
        EmojiToggled: ClassVar[type[Tree.EmojiToggled]]

    def _record(self, event_class: type[Tree.Event], actor: Actor, **fields: Any) -> None:
        """Trigger one of the tree's events, caused by ``actor``."""
        self.trigger_event(event_class, user_id=actor.user_id, client_id=actor.client_id, **fields)

    def change_state(self, to_state: TreeState, reason: str, actor: Actor) -> None:
        if not is_allowed(self.state, to_state):
            raise InvalidStateTransitionError(
                f"{self.state.value} -> {to_state.value} is not allowed"
            )
        halted = to_state is S.HALTED_BY_MODERATOR
        self._record(
            self.TreeHalted if halted else self.StateChanged,
            actor,
            from_state=self.state.value,
            to_state=to_state.value,
            reason=reason,
        )

    def _move(self, move: rules.Move) -> None:
        self.change_state(move.to_state, move.reason, SYSTEM)

    # ------------------------------------------------------------ follow-ups
    def _decide_review(self, message: Message, config: TreeConfig) -> None:
        """After a task-based review: a verdict, then the prompt's move or the tree's growth."""
        verdict = rules.review_verdict(message, config)
        if verdict is None:
            return
        self._record(
            self.ReviewDecided,
            SYSTEM,
            message_id=message.id,
            accepted=verdict.accepted,
            score=verdict.score,
            review_count=verdict.review_count,
        )
        if message.is_root:
            self._move(rules.prompt_move(verdict))
        else:
            self._grow(config)

    def _grow(self, config: TreeConfig) -> None:
        """A growing tree that is complete (or empty) moves on; to ranking means scoring."""
        move = rules.growth_move(self)
        if move is not None:
            self._move(move)
            if move.to_state is S.RANKING:
                self._score(config)

    def _score(self, config: TreeConfig) -> None:
        decision = rules.scoring(self, config)
        if isinstance(decision, rules.Move):
            self._move(decision)
        elif decision is not None:
            self.change_state(S.READY_FOR_SCORING, "rankings_complete", SYSTEM)
            if decision.error is None:
                self._record(self.TreeScored, SYSTEM, ranks=decision.ranks)
                self.change_state(S.READY_FOR_EXPORT, "scored", SYSTEM)
            else:
                self._record(self.ScoringFailed, SYSTEM, error=decision.error)
                self.change_state(S.SCORING_FAILED, "scoring_error", SYSTEM)

    def _set_emoji(
        self, message: Message, emoji: str, added: bool, actor: Actor, config: TreeConfig
    ) -> None:
        self._record(self.EmojiToggled, actor, message_id=message.id, emoji=emoji, added=added)
        if not added:
            return
        step = rules.moderation(self, message, emoji, config)
        if isinstance(step, rules.Move):
            self._move(step)
        elif step is not None:
            self._delete(self.messages[step.message_id], SYSTEM, config, step.reason)

    def _delete(
        self, message: Message, actor: Actor, config: TreeConfig, reason: str
    ) -> list[UUID]:
        """Delete the message and its replies not deleted yet; the tree may stop growing,
        halt without its prompt, or find its rankings complete without the message."""
        ids = [m.id for m in rules.subtree(self, message) if not m.deleted]
        if not ids:
            return []
        self._record(self.MessageDeleted, actor, message_ids=ids, reason=reason)
        if self.state is S.GROWING:
            self._grow(config)
        elif (move := rules.orphan_move(self)) is not None:
            self._move(move)
        elif self.state is S.RANKING:
            self._score(config)
        return ids
