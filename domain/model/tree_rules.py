"""Open-Assistant's tree rules as functions over a ConversationTree.

Guards (``check_*``) raise typed errors and never change anything. Follow-ups
(``decide_review``, ``check_scoring``, ``after_*``, ``auto_moderate``) trigger the events
a fact implies, e.g. the third review of a reply may decide it, which may complete the
tree, which moves it to ranking and, with nothing to rank, straight through scoring.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.model.actor import SYSTEM, Actor
from domain.model.config import TreeConfig
from domain.model.consensus import consensus
from domain.model.errors import (
    DuplicateLabelError,
    DuplicateRankingError,
    DuplicateReplyError,
    InvalidLabelError,
    InvalidRankingError,
    InvalidRoleError,
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
    TreeNotInRankingStateError,
)
from domain.model.labels import acceptance_score, is_accepted, validate_label_values
from domain.model.message import SKIP_REPLY, Message, Role
from domain.model.states import TreeState

if TYPE_CHECKING:
    from domain.model.tree import ConversationTree

S = TreeState


# ---------------------------------------------------------------- structure
def subtree(tree: ConversationTree, message: Message) -> Iterator[Message]:
    stack = [message]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(tree.messages[c] for c in reversed(current.children))


def path_to_root(tree: ConversationTree, message: Message) -> list[Message]:
    path = [message]
    while path[-1].parent_id is not None:
        path.append(tree.messages[path[-1].parent_id])
    return path


def active_children(tree: ConversationTree, parent: Message) -> list[Message]:
    """Children that count against the limits: not deleted, not rejected."""
    children = (tree.messages[c] for c in parent.children)
    return [c for c in children if not c.deleted and c.review_result is not False]


def tree_size(tree: ConversationTree) -> int:
    return sum(1 for m in tree.messages.values() if m.review_result is True and not m.deleted)


def awaiting_review(tree: ConversationTree) -> int:
    return sum(1 for m in tree.messages.values() if m.under_review)


def rankable_children(tree: ConversationTree, parent: Message, config: TreeConfig) -> list[Message]:
    roles = {Role.ASSISTANT, Role.PROMPTER} if config.rank_prompter_replies else {Role.ASSISTANT}
    children = (tree.messages[c] for c in parent.children)
    return [c for c in children if c.review_result is True and not c.deleted and c.role in roles]


def rankable_parents(tree: ConversationTree, config: TreeConfig) -> list[Message]:
    return [
        m
        for m in tree.messages.values()
        if not m.deleted and len(rankable_children(tree, m, config)) > 1
    ]


# ---------------------------------------------------------------- guards
def reply_limit(tree: ConversationTree, parent: Message, config: TreeConfig) -> int:
    if parent.role is Role.ASSISTANT:
        return min(tree.max_children_count, config.num_prompter_replies)
    return tree.max_children_count


def check_undelete(tree: ConversationTree, revived: list[Message], config: TreeConfig) -> None:
    """A restored reply counts again: its parent may have taken other replies since."""
    for message in revived:
        if message.parent_id is None or message.review_result is False:
            continue
        parent = tree.messages[message.parent_id]
        limit = reply_limit(tree, parent, config)
        if len(active_children(tree, parent)) >= limit:
            raise MaxChildrenExceededError(
                f"message {parent.id} already has its {limit} replies; delete one first"
            )


def check_reply(
    tree: ConversationTree,
    parent: Message,
    actor: Actor,
    config: TreeConfig,
    role: Role | str | None,
) -> None:
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


def check_labels(
    tree: ConversationTree,
    message: Message,
    labels: dict[str, float],
    actor: Actor,
    kind: str,
    valid: frozenset[str] | None,
    mandatory: frozenset[str] | None,
) -> None:
    if kind not in ("task", "free", "report"):
        raise InvalidLabelError(f"unknown label submission kind {kind!r}")
    if not labels:
        raise InvalidLabelError("no labels given")
    validate_label_values(labels)
    if kind != "task":
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
    tree: ConversationTree, parent: Message, ranked: list[UUID], actor: Actor, config: TreeConfig
) -> None:
    if tree.state is not S.RANKING:
        raise TreeNotInRankingStateError(f"tree {tree.id} is {tree.state.value}, not ranking")
    children = rankable_children(tree, parent, config)
    if len(children) < 2:
        raise NoRepliesFoundError(f"message {parent.id} has no replies to rank")
    if len(ranked) != len(set(ranked)) or set(ranked) != {c.id for c in children}:
        raise InvalidRankingError(
            f"ranking must be a permutation of the {len(children)} replies of message {parent.id}"
        )
    if actor.user_id is not None:
        if any(c.user_id == actor.user_id for c in children):
            raise SelfRankingError("users cannot rank replies among which is their own")
        if any(ranker == actor.user_id for ranker, _, _ in parent.rankings):
            raise DuplicateRankingError(f"user already ranked the replies of message {parent.id}")
    if len(parent.rankings) >= config.num_required_rankings:
        raise RankingCompleteError(f"the replies of message {parent.id} are already fully ranked")


# ---------------------------------------------------------------- follow-ups
def decide_review(tree: ConversationTree, message: Message, config: TreeConfig) -> None:
    """Decide acceptance exactly at the Nth task-based review (strict threshold)."""
    required = config.num_reviews_initial_prompt if message.is_root else config.num_reviews_reply
    if message.review_count < required or message.review_result is not None:
        return
    threshold = (
        config.acceptance_threshold_initial_prompt
        if message.is_root
        else config.acceptance_threshold_reply
    )
    score = acceptance_score(message.reviews.values())
    accepted = is_accepted(score, threshold)
    tree.trigger_event(
        tree.ReviewDecided,
        user_id=None,
        client_id=None,
        message_id=message.id,
        accepted=accepted,
        score=score,
        review_count=message.review_count,
    )
    if message.is_root:
        if accepted:
            tree.change_state(S.PROMPT_LOTTERY_WAITING, "prompt_accepted", SYSTEM)
        else:
            tree.change_state(S.ABORTED_LOW_GRADE, "prompt_rejected", SYSTEM)
    else:
        check_growth_complete(tree, config)


def check_growth_complete(tree: ConversationTree, config: TreeConfig) -> None:
    if tree.state is not S.GROWING:
        return
    size = tree_size(tree)
    if size == 0 or tree.root.deleted:
        tree.change_state(S.HALTED_BY_MODERATOR, "all_messages_deleted", SYSTEM)
    elif size >= tree.goal_tree_size and awaiting_review(tree) == 0:
        tree.change_state(S.RANKING, "goal_size_reached", SYSTEM)
        check_scoring(tree, config)


def check_scoring(tree: ConversationTree, config: TreeConfig) -> None:
    """ranking -> ready_for_scoring -> ready_for_export, also for trees with nothing to rank."""
    if tree.state not in (S.RANKING, S.SCORING_FAILED):
        return
    parents = rankable_parents(tree, config)
    complete = all(len(p.rankings) >= config.num_required_rankings for p in parents)
    if not complete:
        if tree.state is S.SCORING_FAILED:
            tree.change_state(S.RANKING, "rankings_incomplete", SYSTEM)
        return
    tree.change_state(S.READY_FOR_SCORING, "rankings_complete", SYSTEM)
    try:
        ranks: dict[str, list[UUID]] = {}
        for parent in parents:
            order = consensus([ids for _, ids, _ in parent.rankings])
            if order is not None:
                ranks[str(parent.id)] = order
    except Exception as error:  # noqa: BLE001 - any failure is recorded, the tree can retry
        tree.trigger_event(
            tree.ScoringFailed,
            user_id=None,
            client_id=None,
            error=f"{type(error).__name__}: {error}",
        )
        tree.change_state(S.SCORING_FAILED, "scoring_error", SYSTEM)
        return
    tree.trigger_event(tree.TreeScored, user_id=None, client_id=None, ranks=ranks)
    tree.change_state(S.READY_FOR_EXPORT, "scored", SYSTEM)


def resume_target(tree: ConversationTree) -> TreeState:
    halted_from = tree.halted_from
    if halted_from in (S.INITIAL_PROMPT_REVIEW, S.PROMPT_LOTTERY_WAITING, S.BACKLOG_RANKING):
        return halted_from
    if tree.won_lottery_at is not None:
        return S.GROWING
    return S.INITIAL_PROMPT_REVIEW


def after_resume(tree: ConversationTree, config: TreeConfig) -> None:
    if tree.state is S.INITIAL_PROMPT_REVIEW:
        root = tree.root
        if root.review_result is True:
            tree.change_state(S.PROMPT_LOTTERY_WAITING, "prompt_accepted", SYSTEM)
    elif tree.state is S.GROWING:
        check_growth_complete(tree, config)


def after_deletion(tree: ConversationTree, config: TreeConfig) -> None:
    if tree.state is S.GROWING:
        check_growth_complete(tree, config)
    elif tree.root.deleted and tree.state in (
        S.INITIAL_PROMPT_REVIEW,
        S.PROMPT_LOTTERY_WAITING,
        S.RANKING,
        S.BACKLOG_RANKING,
    ):
        tree.change_state(S.HALTED_BY_MODERATOR, "all_messages_deleted", SYSTEM)
    elif tree.state is S.RANKING:
        check_scoring(tree, config)


def after_undeletion(tree: ConversationTree, config: TreeConfig) -> None:
    # Restored accepted replies count towards the goal size again.
    if tree.state is S.GROWING:
        check_growth_complete(tree, config)


def auto_moderate(tree: ConversationTree, message: Message, emoji: str, config: TreeConfig) -> None:
    if not config.auto_mod_enabled:
        return
    if emoji == "red_flag" and message.emoji_count("red_flag") >= config.auto_mod_red_flags:
        if message.is_root:
            if tree.state in (S.INITIAL_PROMPT_REVIEW, S.GROWING):
                tree.change_state(S.ABORTED_LOW_GRADE, "auto_mod_red_flags", SYSTEM)
        elif not message.deleted:
            tree.delete_message(
                message_id=message.id, actor=SYSTEM, config=config, reason="auto_mod_red_flags"
            )
    elif (
        emoji == SKIP_REPLY
        and tree.state is S.GROWING
        and message.emoji_count(SKIP_REPLY) >= config.auto_mod_max_skip_reply
    ):
        tree.change_state(S.HALTED_BY_MODERATOR, "auto_mod_skip_reply", SYSTEM)


def message_dict(m: Message) -> dict[str, Any]:
    return {
        "id": str(m.id),
        "parent_id": str(m.parent_id) if m.parent_id else None,
        "role": m.role.value,
        "depth": m.depth,
        "text": m.text,
        "lang": m.lang,
        "user_id": str(m.user_id) if m.user_id else None,
        "synthetic": m.synthetic,
        "model_name": m.model_name,
        "review_count": m.review_count,
        "review_result": m.review_result,
        "deleted": m.deleted,
        "edited": m.edited,
        "ranking_count": m.ranking_count,
        "rank": m.rank,
        "emojis": m.emoji_counts(),
        "children": [str(c) for c in m.children],
    }
