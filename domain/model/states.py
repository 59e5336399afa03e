"""The ten tree states of Open-Assistant and the edges a tree may move along."""

from __future__ import annotations

from enum import StrEnum


class TreeState(StrEnum):
    INITIAL_PROMPT_REVIEW = "initial_prompt_review"
    PROMPT_LOTTERY_WAITING = "prompt_lottery_waiting"
    GROWING = "growing"
    RANKING = "ranking"
    READY_FOR_SCORING = "ready_for_scoring"
    READY_FOR_EXPORT = "ready_for_export"
    SCORING_FAILED = "scoring_failed"
    ABORTED_LOW_GRADE = "aborted_low_grade"
    HALTED_BY_MODERATOR = "halted_by_moderator"
    BACKLOG_RANKING = "backlog_ranking"


S = TreeState

# Trees in these states get tasks handed out. OA calls every other state "terminal",
# which wrongly included prompt_lottery_waiting; we keep "active" and "final" apart.
ACTIVE_STATES = frozenset({S.INITIAL_PROMPT_REVIEW, S.GROWING, S.RANKING, S.READY_FOR_SCORING})
FINAL_STATES = frozenset({S.READY_FOR_EXPORT, S.ABORTED_LOW_GRADE})

# Replies are stored in these states; after growing they are kept but never reviewed.
REPLY_STATES = frozenset({S.GROWING, S.RANKING, S.READY_FOR_SCORING, S.READY_FOR_EXPORT})

# A moderator may halt any tree that is not already final or halted.
HALTABLE_STATES = frozenset(
    {
        S.INITIAL_PROMPT_REVIEW,
        S.PROMPT_LOTTERY_WAITING,
        S.GROWING,
        S.RANKING,
        S.READY_FOR_SCORING,
        S.SCORING_FAILED,
        S.BACKLOG_RANKING,
    }
)

# Every edge a tree may take (reference §1.2, with OA's quirks fixed). Halting is
# allowed from every HALTABLE state and resuming goes back to a working phase.
ALLOWED_TRANSITIONS: frozenset[tuple[TreeState, TreeState]] = frozenset(
    {
        (S.INITIAL_PROMPT_REVIEW, S.PROMPT_LOTTERY_WAITING),
        (S.INITIAL_PROMPT_REVIEW, S.ABORTED_LOW_GRADE),
        (S.PROMPT_LOTTERY_WAITING, S.GROWING),
        (S.GROWING, S.RANKING),
        (S.GROWING, S.ABORTED_LOW_GRADE),
        (S.RANKING, S.READY_FOR_SCORING),
        (S.READY_FOR_SCORING, S.READY_FOR_EXPORT),
        (S.READY_FOR_SCORING, S.SCORING_FAILED),
        (S.SCORING_FAILED, S.READY_FOR_SCORING),
        (S.SCORING_FAILED, S.RANKING),
        (S.BACKLOG_RANKING, S.RANKING),
        (S.BACKLOG_RANKING, S.ABORTED_LOW_GRADE),
        (S.HALTED_BY_MODERATOR, S.INITIAL_PROMPT_REVIEW),
        (S.HALTED_BY_MODERATOR, S.PROMPT_LOTTERY_WAITING),
        (S.HALTED_BY_MODERATOR, S.GROWING),
        (S.HALTED_BY_MODERATOR, S.BACKLOG_RANKING),
    }
    | {(s, S.HALTED_BY_MODERATOR) for s in HALTABLE_STATES}
)


def is_allowed(from_state: TreeState | None, to_state: TreeState) -> bool:
    if from_state is None:
        # A tree is born in review, or (imports) straight into a later phase.
        return to_state in {
            S.INITIAL_PROMPT_REVIEW,
            S.PROMPT_LOTTERY_WAITING,
            S.GROWING,
            S.RANKING,
            S.BACKLOG_RANKING,
            S.READY_FOR_EXPORT,
        }
    return (from_state, to_state) in ALLOWED_TRANSITIONS
