"""Guards of the ConversationTree's commands: Open-Assistant's refusals as typed errors.

Every ``check_*`` reads the tree and raises a DomainError naming what is wrong; none
changes anything, so a refused command leaves no trace. The aggregate runs them before
it triggers an event (domain.model.tree_commands).
"""

from __future__ import annotations

from uuid import UUID

from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.errors import (
    DuplicateLabelError,
    DuplicateRankingError,
    DuplicateReplyError,
    EmojiOpUnsupportedError,
    InvalidLabelError,
    InvalidRankingError,
    InvalidRoleError,
    InvalidStateTransitionError,
    MandatoryLabelMissingError,
    MaxChildrenExceededError,
    MaxDepthExceededError,
    MessageDeletedError,
    NoRepliesFoundError,
    NotUnderReviewError,
    ParentNotAcceptedError,
    RankingCompleteError,
    SelfLabelingError,
    SelfRankingError,
    TreeInAbortedStateError,
    TreeNotInRankingStateError,
)
from domain.model.labels import LabelKind, validate_label_values
from domain.model.message import USER_EMOJIS, Message, Role, check_text
from domain.model.states import HALTABLE_STATES, REPLY_STATES, TreeState
from domain.model.tree_data import TreeData
from domain.model.tree_rules import active_children, rankable_children, reply_limit

S = TreeState
EMOJI_OPS = ("toggle", "add", "remove")


def check_reply(
    tree: TreeData,
    parent: Message,
    actor: Actor,
    config: TreeConfig,
    role: Role | str | None,
) -> None:
    if tree.state not in REPLY_STATES:
        raise TreeInAbortedStateError(
            f"tree {tree.id} is in state {tree.state.value} and takes no replies"
        )
    if parent.deleted:
        raise MessageDeletedError(f"parent message {parent.id} is deleted")
    if parent.review_result is not True:
        raise ParentNotAcceptedError(f"parent message {parent.id} has not been accepted by review")
    if role is not None and Role(role) is not parent.role.reply_role:
        raise InvalidRoleError(
            f"a {parent.role.value} message takes {parent.role.reply_role.value} replies"
        )
    if parent.depth >= tree.max_depth:
        raise MaxDepthExceededError(f"message {parent.id} is at the maximum depth {tree.max_depth}")
    limit = reply_limit(tree, parent, config)
    if len(active_children(tree, parent)) >= limit:
        raise MaxChildrenExceededError(f"message {parent.id} already has its {limit} replies")
    if actor.user_id is not None and any(
        tree.messages[c].user_id == actor.user_id for c in parent.children
    ):
        raise DuplicateReplyError(f"user already replied to message {parent.id}")


def label_kind(kind: LabelKind | str) -> LabelKind:
    try:
        return LabelKind(kind)
    except ValueError:
        raise InvalidLabelError(f"unknown label submission kind {kind!r}") from None


def check_labels(
    tree: TreeData,
    message: Message,
    labels: dict[str, float],
    actor: Actor,
    kind: LabelKind,
    valid: frozenset[str] | None,
    mandatory: frozenset[str] | None,
) -> None:
    if not labels:
        raise InvalidLabelError("no labels given")
    validate_label_values(labels)
    if kind is not LabelKind.TASK:
        return
    if message.deleted:
        raise MessageDeletedError(f"message {message.id} is deleted")
    if actor.user_id is not None and message.user_id == actor.user_id:
        raise SelfLabelingError("users cannot review their own messages")
    if actor.user_id in message.reviews:
        raise DuplicateLabelError(f"user already reviewed message {message.id}")
    review_state = S.INITIAL_PROMPT_REVIEW if message.is_root else S.GROWING
    if tree.state is not review_state or message.review_result is not None:
        raise NotUnderReviewError(f"message {message.id} is not awaiting review")
    if valid is not None:
        invalid = sorted(set(labels) - valid)
        if invalid:
            raise InvalidLabelError(f"labels not valid for this task: {', '.join(invalid)}")
    if mandatory:
        missing = sorted(mandatory - set(labels))
        if missing:
            raise MandatoryLabelMissingError(f"mandatory labels missing: {', '.join(missing)}")


def check_ranking(
    tree: TreeData,
    parent: Message,
    ranked: list[UUID],
    actor: Actor,
    config: TreeConfig,
    display_order: list[UUID] | None = None,
) -> None:
    if tree.state is not S.RANKING:
        raise TreeNotInRankingStateError(f"tree {tree.id} is {tree.state.value}, not ranking")
    children = rankable_children(tree, parent, config)
    if len(children) < 2:
        raise NoRepliesFoundError(f"message {parent.id} has no replies to rank")
    if not _is_permutation(ranked, {c.id for c in children}):
        raise InvalidRankingError(
            f"ranking must be a permutation of the {len(children)} replies of message {parent.id}"
        )
    if display_order is not None and not _is_permutation(display_order, set(ranked)):
        raise InvalidRankingError(
            f"display_order must list the {len(children)} ranked replies of message "
            f"{parent.id}, each once, in the order they were shown"
        )
    if actor.user_id is not None:
        if any(c.user_id == actor.user_id for c in children):
            raise SelfRankingError("users cannot rank replies among which is their own")
        if any(ranker == actor.user_id for ranker, _, _ in parent.rankings):
            raise DuplicateRankingError(f"user already ranked the replies of message {parent.id}")
    if len(parent.rankings) >= config.num_required_rankings:
        raise RankingCompleteError(f"the replies of message {parent.id} are already fully ranked")


def _is_permutation(ids: list[UUID], of: set[UUID]) -> bool:
    return len(ids) == len(set(ids)) and set(ids) == of


def check_retry_scoring(tree: TreeData) -> None:
    if tree.state is not S.SCORING_FAILED:
        raise InvalidStateTransitionError(
            f"tree {tree.id} is {tree.state.value}, not scoring_failed"
        )


def check_halt(tree: TreeData) -> None:
    if tree.state not in HALTABLE_STATES:
        raise InvalidStateTransitionError(
            f"tree {tree.id} in state {tree.state.value} cannot be halted"
        )


def check_resume(tree: TreeData) -> None:
    if tree.state is not S.HALTED_BY_MODERATOR:
        raise InvalidStateTransitionError(f"tree {tree.id} is {tree.state.value}, not halted")
    if tree.root.deleted:  # it would work on in review or the lottery with no prompt
        raise MessageDeletedError(f"the prompt of tree {tree.id} is deleted; undelete it first")


def check_undelete(tree: TreeData, revived: list[Message], config: TreeConfig) -> None:
    """A restored reply counts again: its parent may have taken other replies since.
    A purged message stays gone: a purge is not a deletion to take back."""
    for message in revived:
        if message.purged:
            raise MessageDeletedError(f"message {message.id} was purged; it cannot be restored")
        if message.parent_id is None or message.review_result is False:
            continue
        parent = tree.messages[message.parent_id]
        limit = reply_limit(tree, parent, config)
        if len(active_children(tree, parent)) >= limit:
            raise MaxChildrenExceededError(
                f"message {parent.id} already has its {limit} replies; delete one first"
            )


def check_edit(message: Message, text: str, config: TreeConfig) -> None:
    if message.deleted:
        raise MessageDeletedError(f"message {message.id} is deleted")
    check_text(text, config.message_size_limit)


def check_emoji(emoji: str, op: str) -> None:
    if emoji not in USER_EMOJIS:
        raise EmojiOpUnsupportedError(f"unknown emoji {emoji!r}")
    if op not in EMOJI_OPS:
        raise EmojiOpUnsupportedError(f"unsupported emoji op {op!r}")
