"""Open-Assistant's tree rules as pure decisions over a tree's state.

Nothing here changes a tree or triggers an event. Queries describe the tree's structure;
decisions say what should follow a fact (a verdict on a review, a state move, the scores
of complete rankings, an auto-moderation step) and the ConversationTree aggregate records
them, e.g. the third review of a reply gets a verdict, the verdict may complete the tree,
which moves it to ranking and, with nothing to rank, straight through scoring. The
guards that refuse commands are in ``domain.model.tree_guards``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.consensus import consensus
from domain.model.labels import acceptance_score, is_accepted
from domain.model.message import SKIP_REPLY, Message, Role
from domain.model.states import TreeState
from domain.model.tree_data import TreeData

S = TreeState


# ---------------------------------------------------------------- decisions
@dataclass(frozen=True, slots=True)
class Move:
    """The tree should move to ``to_state``, for ``reason`` (recorded with the move)."""

    to_state: TreeState
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """A review is decided: the message is accepted or not, with this score."""

    accepted: bool
    score: float
    review_count: int


@dataclass(frozen=True, slots=True)
class Scores:
    """The rankings are complete: consensus orders (best first) by str(parent id), or the
    error that computing them raised (recorded, and the tree can retry)."""

    ranks: dict[str, list[UUID]]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Removal:
    """Auto-moderation takes a message (and its replies) out of the tree."""

    message_id: UUID
    reason: str


# ---------------------------------------------------------------- structure
def subtree(tree: TreeData, message: Message) -> Iterator[Message]:
    stack = [message]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(tree.messages[c] for c in reversed(current.children))


def path_to_root(tree: TreeData, message: Message) -> list[Message]:
    path = [message]
    while path[-1].parent_id is not None:
        path.append(tree.messages[path[-1].parent_id])
    return path


def active_children(tree: TreeData, parent: Message) -> list[Message]:
    """Children that count against the limits: not deleted, not rejected."""
    children = (tree.messages[c] for c in parent.children)
    return [c for c in children if not c.deleted and c.review_result is not False]


def tree_size(tree: TreeData) -> int:
    return len([m for m in tree.messages.values() if m.review_result is True and not m.deleted])


def awaiting_review(tree: TreeData) -> int:
    return len([m for m in tree.messages.values() if m.under_review])


def rankable_children(tree: TreeData, parent: Message, config: TreeConfig) -> list[Message]:
    roles = {Role.ASSISTANT, Role.PROMPTER} if config.rank_prompter_replies else {Role.ASSISTANT}
    children = (tree.messages[c] for c in parent.children)
    return [c for c in children if c.review_result is True and not c.deleted and c.role in roles]


def rankable_parents(tree: TreeData, config: TreeConfig) -> list[Message]:
    return [
        m
        for m in tree.messages.values()
        if not m.deleted and len(rankable_children(tree, m, config)) > 1
    ]


def reply_limit(tree: TreeData, parent: Message, config: TreeConfig) -> int:
    if parent.role is Role.ASSISTANT:
        return min(tree.max_children_count, config.num_prompter_replies)
    return tree.max_children_count


# ---------------------------------------------------------------- follow-ups
def review_verdict(message: Message, config: TreeConfig) -> Verdict | None:
    """Acceptance is decided exactly at the Nth task-based review (strict threshold)."""
    required = config.num_reviews_initial_prompt if message.is_root else config.num_reviews_reply
    if message.review_count < required or message.review_result is not None:
        return None
    threshold = (
        config.acceptance_threshold_initial_prompt
        if message.is_root
        else config.acceptance_threshold_reply
    )
    score = acceptance_score(message.reviews.values())
    return Verdict(is_accepted(score, threshold), score, message.review_count)


def prompt_move(verdict: Verdict) -> Move:
    """Where a prompt's verdict sends its tree."""
    if verdict.accepted:
        return Move(S.PROMPT_LOTTERY_WAITING, "prompt_accepted")
    return Move(S.ABORTED_LOW_GRADE, "prompt_rejected")


def growth_move(tree: TreeData) -> Move | None:
    """A growing tree stops when nothing is left of it or it reached its goal size."""
    if tree.state is not S.GROWING:
        return None
    size = tree_size(tree)
    if size == 0 or tree.root.deleted:
        return Move(S.HALTED_BY_MODERATOR, "all_messages_deleted")
    if size >= tree.goal_tree_size and awaiting_review(tree) == 0:
        return Move(S.RANKING, "goal_size_reached")
    return None


def scoring(tree: TreeData, config: TreeConfig) -> Move | Scores | None:
    """ranking -> ready_for_scoring -> ready_for_export, also for trees with nothing to rank.

    None: nothing to do yet; a Move: a failed scoring finds the rankings short again;
    Scores: every rankable parent is fully ranked and the tree can be scored.
    """
    if tree.state not in (S.RANKING, S.SCORING_FAILED):
        return None
    parents = rankable_parents(tree, config)
    if not all(len(p.rankings) >= config.num_required_rankings for p in parents):
        return Move(S.RANKING, "rankings_incomplete") if tree.state is S.SCORING_FAILED else None
    try:
        ranks: dict[str, list[UUID]] = {}
        for parent in parents:
            order = consensus([ids for _, ids, _ in parent.rankings])
            if order is not None:
                ranks[str(parent.id)] = order
    except Exception as error:  # noqa: BLE001 - any failure is recorded, the tree can retry
        return Scores({}, f"{type(error).__name__}: {error}")
    return Scores(ranks)


def activation_move(tree: TreeData, config: TreeConfig, reason: str) -> Move | None:
    """A waiting prompt drawn (by ``reason``) grows; a backlog tree is ranked, if it can be.

    None: the tree is in neither state and cannot be activated.
    """
    if tree.state is S.PROMPT_LOTTERY_WAITING:
        return Move(S.GROWING, reason)
    if tree.state is S.BACKLOG_RANKING:
        if rankable_parents(tree, config):
            return Move(S.RANKING, reason)
        return Move(S.ABORTED_LOW_GRADE, "nothing_to_rank")
    return None


def resume_target(tree: TreeData) -> TreeState:
    halted_from = tree.halted_from
    if halted_from in (S.INITIAL_PROMPT_REVIEW, S.PROMPT_LOTTERY_WAITING, S.BACKLOG_RANKING):
        return halted_from
    if tree.won_lottery_at is not None:
        return S.GROWING
    return S.INITIAL_PROMPT_REVIEW


def resumed_prompt_move(tree: TreeData) -> Move | None:
    """A prompt accepted while its tree was halted goes on to the lottery when resumed."""
    if tree.state is S.INITIAL_PROMPT_REVIEW and tree.root.review_result is True:
        return Move(S.PROMPT_LOTTERY_WAITING, "prompt_accepted")
    return None


def orphan_move(tree: TreeData) -> Move | None:
    """A tree whose prompt is deleted outside growth halts (growth checks it by itself)."""
    if tree.root.deleted and tree.state in (
        S.INITIAL_PROMPT_REVIEW,
        S.PROMPT_LOTTERY_WAITING,
        S.RANKING,
        S.BACKLOG_RANKING,
    ):
        return Move(S.HALTED_BY_MODERATOR, "all_messages_deleted")
    return None


def moderation(
    tree: TreeData, message: Message, emoji: str, config: TreeConfig
) -> Move | Removal | None:
    """What an emoji just added triggers: too many red flags abort a prompt's tree or remove
    a reply; too many skipped replies halt a growing tree."""
    if not config.auto_mod_enabled:
        return None
    reason = "auto_mod_red_flags"
    if emoji == "red_flag" and message.emoji_count("red_flag") >= config.auto_mod_red_flags:
        if message.is_root:
            if tree.state in (S.INITIAL_PROMPT_REVIEW, S.GROWING):
                return Move(S.ABORTED_LOW_GRADE, reason)
        elif not message.deleted:
            return Removal(message.id, reason)
    elif (
        emoji == SKIP_REPLY
        and tree.state is S.GROWING
        and message.emoji_count(SKIP_REPLY) >= config.auto_mod_max_skip_reply
    ):
        return Move(S.HALTED_BY_MODERATOR, "auto_mod_skip_reply")
    return None


def emoji_changes(message: Message, emoji: str, actor: Actor, op: str) -> list[tuple[str, bool]]:
    """The (emoji, added) clicks an emoji op amounts to, in order: none when it changes
    nothing or is a vote on one's own message (OA ignores those); a vote takes back the
    user's opposite vote first."""
    has = actor.user_id in message.emojis.get(emoji, ())
    add = (not has) if op == "toggle" else op == "add"
    if add == has:
        return []
    changes: list[tuple[str, bool]] = []
    if emoji in ("+1", "-1"):
        if add and message.user_id is not None and message.user_id == actor.user_id:
            return []
        opposite = "-1" if emoji == "+1" else "+1"
        if add and actor.user_id in message.emojis.get(opposite, ()):
            changes.append((opposite, False))
    changes.append((emoji, add))
    return changes
