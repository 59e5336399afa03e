"""OA's tree rules, one test per rule and per error code: replies, labels/review,
ranking/scoring and auto-moderation. Each test checks the events recorded and the
resulting state, not only that a call did or did not raise."""

from __future__ import annotations

from uuid import uuid4

import pytest

import domain.model.tree_rules
from domain.model.actor import Actor
from domain.model.consensus import consensus
from domain.model.errors import ErrorCode as E
from domain.model.errors import SelfLabelingError
from domain.model.states import TreeState as S
from domain.model.tree import ConversationTree as CT
from tests.conftest import names, of, small_config, state_moves


def author_of(kit, tree_id, message_id) -> Actor:
    return Actor(kit.message(tree_id, message_id).user_id, kit.client_id)


# ================================================================== replies
def test_reply_is_recorded_with_role_depth_and_author(kit):
    t = kit.growing_tree()
    author, v = kit.user(), kit.version(t)
    a = kit.reply(t, t, author, text="an answer")
    (added,) = kit.events(t, v)
    assert type(added) is CT.ReplyAdded
    assert (added.message_id, added.parent_id, added.role, added.depth, added.user_id) == (
        a,
        t,
        "assistant",
        1,
        author.user_id,
    )
    tree = kit.tree(t)
    assert tree.root.children == [a] and tree.messages[a].review_result is None


@pytest.mark.parametrize(
    "state",
    [S.INITIAL_PROMPT_REVIEW, S.PROMPT_LOTTERY_WAITING, S.ABORTED_LOW_GRADE, S.HALTED_BY_MODERATOR],
)
def test_replies_only_in_reply_states(kit, state):
    t = kit.tree_in(state)
    with kit.refused(E.TREE_IN_ABORTED_STATE, t):
        kit.reply(t, t)


def test_late_replies_are_stored_but_never_reviewed_or_ranked(kit):
    t, (a1, a2) = kit.ranking_tree()
    late = kit.reply(t, t)
    assert kit.state(t) is S.RANKING and kit.message(t, late).review_result is None
    with kit.refused(E.TEXT_LABELS_NOT_UNDER_REVIEW, t):
        kit.label(t, late)
    with kit.refused(E.INVALID_RANKING_VALUE, t):
        kit.rank(t, t, [a1, a2, late])
    for _ in range(3):
        kit.rank(t, t, [a1, a2])
    assert kit.state(t) is S.READY_FOR_EXPORT
    v = kit.version(t)
    later = kit.reply(t, a1)
    assert names(kit.events(t, v)) == ["ReplyAdded"]
    assert kit.state(t) is S.READY_FOR_EXPORT and kit.message(t, later).review_result is None
    assert kit.message(t, late).rank is None


def test_depth_limit(make_kit):
    kit = make_kit(max_tree_depth=2)
    t = kit.growing_tree(goal_tree_size=10)
    a = kit.accepted_reply(t, t)
    p = kit.accepted_reply(t, a)
    assert kit.message(t, p).depth == 2
    with kit.refused(E.MAX_DEPTH_EXCEEDED, t):
        kit.reply(t, p)


@pytest.mark.parametrize("limit", [2, 3])
def test_prompter_parent_takes_max_children_count_replies(make_kit, limit):
    kit = make_kit(max_children_count=limit)
    t = kit.growing_tree()
    for _ in range(limit):
        kit.reply(t, t)
    with kit.refused(E.MAX_CHILDREN_EXCEEDED, t):
        kit.reply(t, t)
    assert len(kit.tree(t).root.children) == limit


@pytest.mark.parametrize("limit", [1, 2])
def test_assistant_parent_takes_num_prompter_replies(make_kit, limit):
    kit = make_kit(num_prompter_replies=limit)
    t = kit.growing_tree(goal_tree_size=10)
    a = kit.accepted_reply(t, t)
    for _ in range(limit):
        kit.reply(t, a)
    with kit.refused(E.MAX_CHILDREN_EXCEEDED, t):
        kit.reply(t, a)


def test_rejected_and_deleted_children_free_their_slot(kit):
    t = kit.growing_tree(goal_tree_size=10)
    r1, r2, _ = (kit.reply(t, t) for _ in range(3))
    kit.review(t, r1, spam_votes=3)
    assert kit.message(t, r1).review_result is False
    kit.reply(t, t)
    with kit.refused(E.MAX_CHILDREN_EXCEEDED, t):
        kit.reply(t, t)
    kit.app.delete_message(tree_id=t, message_id=r2, actor=kit.user())
    kit.reply(t, t)
    assert len(kit.tree(t).root.children) == 5


def test_one_reply_per_user_per_parent(kit):
    t = kit.growing_tree()
    author = kit.user()
    kit.reply(t, t, author)
    with kit.refused(E.TASK_MESSAGE_DUPLICATE_REPLY, t):
        kit.reply(t, t, author)
    kit.reply(t, t)  # someone else still may


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text_refused(kit, text):
    t = kit.growing_tree()
    with kit.refused(E.TASK_MESSAGE_TEXT_EMPTY, t):
        kit.reply(t, t, text=text)


def test_message_size_limit_is_configurable(make_kit):
    kit = make_kit(message_size_limit=10)
    with kit.refused(E.TASK_MESSAGE_TOO_LONG):
        kit.prompt(text="x" * 11)
    t = kit.growing_tree(text="y" * 10)
    with kit.refused(E.TASK_MESSAGE_TOO_LONG, t):
        kit.reply(t, t, text="z" * 11)
    kit.reply(t, t, text="z" * 10)


def test_parent_must_be_accepted(kit):
    t = kit.growing_tree(goal_tree_size=10)
    pending, rejected = kit.reply(t, t), kit.reply(t, t)
    kit.review(t, rejected, spam_votes=2)
    for parent in (pending, rejected):
        with kit.refused(E.PARENT_NOT_ACCEPTED, t):
            kit.reply(t, parent)


def test_parent_deleted(kit):
    t = kit.growing_tree(goal_tree_size=10)
    a = kit.accepted_reply(t, t)
    kit.app.delete_message(tree_id=t, message_id=a, actor=kit.user())
    with kit.refused(E.MESSAGE_DELETED, t):
        kit.reply(t, a)


def test_wrong_role(kit):
    t = kit.growing_tree()
    with kit.refused(E.INVALID_ROLE, t):
        kit.reply(t, t, role="prompter")
    a = kit.reply(t, t, role="assistant")
    assert kit.message(t, a).role == "assistant"


def test_unknown_parent_and_unknown_tree(kit):
    t = kit.growing_tree()
    with kit.refused(E.MESSAGE_NOT_FOUND, t):
        kit.reply(t, uuid4())
    with kit.refused(E.NO_MESSAGE_TREE_FOUND):
        kit.reply(uuid4(), t)


# ================================================================== labels and review
def test_self_labelling(kit):
    author = kit.user()
    t = kit.prompt(author)
    with kit.refused(E.TEXT_LABELS_NO_SELF_LABELING, t):
        kit.label(t, t, author)


def test_duplicate_task_label(kit):
    t = kit.prompt()
    reviewer = kit.label(t, t)
    with kit.refused(E.TEXT_LABELS_DUPLICATE_TASK_REPLY, t):
        kit.label(t, t, reviewer)
    assert kit.message(t, t).review_count == 1


def test_invalid_label_names(kit):
    t = kit.prompt()
    with kit.refused(E.TEXT_LABELS_INVALID_LABEL, t):
        kit.label(t, t, bogus=1.0)
    with kit.refused(E.TEXT_LABELS_INVALID_LABEL, t):
        kit.app.submit_labels(
            actor=kit.user(),
            tree_id=t,
            message_id=t,
            labels={"spam": 0.0, "quality": 0.5},
            valid_labels=["spam", "lang_mismatch"],
        )


def test_mandatory_label_missing(kit):
    t = kit.prompt()
    with kit.refused(E.TEXT_LABELS_MANDATORY_LABEL_MISSING, t):
        kit.app.submit_labels(
            actor=kit.user(),
            tree_id=t,
            message_id=t,
            labels={"quality": 0.5},
            mandatory_labels=["spam"],
        )


@pytest.mark.parametrize("value", [1.5, -0.1, float("nan")])
def test_label_value_out_of_range(kit, value):
    t = kit.prompt()
    with kit.refused(E.TEXT_LABELS_VALUE_OUT_OF_RANGE, t):
        kit.label(t, t, spam=value)


def test_not_under_review(kit):
    decided_root = kit.prompt()
    kit.review(decided_root, decided_root)
    halted = kit.prompt()  # undecided, but its tree is not in review
    kit.app.halt_tree(tree_id=halted, actor=kit.user())
    t = kit.growing_tree(goal_tree_size=10)
    decided_reply = kit.accepted_reply(t, t)
    for tree_id, message_id in (
        (decided_root, decided_root),
        (halted, halted),
        (t, t),
        (t, decided_reply),
    ):
        with kit.refused(E.TEXT_LABELS_NOT_UNDER_REVIEW, tree_id):
            kit.label(tree_id, message_id)


@pytest.mark.parametrize(
    "spam_votes, accepted, score",
    [(0, True, 1.0), (1, True, 2 / 3), (2, False, 1 / 3), (3, False, 0.0)],
)
def test_prompt_decided_exactly_at_third_review(kit, spam_votes, accepted, score):
    t = kit.prompt()
    for k in range(2):
        kit.label(t, t, spam=float(k < spam_votes))
    assert kit.message(t, t).review_result is None and kit.state(t) is S.INITIAL_PROMPT_REVIEW
    v = kit.version(t)
    kit.label(t, t, spam=float(2 < spam_votes))
    events = kit.events(t, v)
    (decided,) = of(CT.ReviewDecided, events)
    assert decided.accepted is accepted and decided.review_count == 3
    assert decided.score == pytest.approx(score)
    target = S.PROMPT_LOTTERY_WAITING if accepted else S.ABORTED_LOW_GRADE
    assert state_moves(events) == [(S.INITIAL_PROMPT_REVIEW, target)]


def test_threshold_is_strict(make_kit):
    kit = make_kit(num_reviews_initial_prompt=5)
    t = kit.prompt()
    kit.review(t, t, spam_votes=2)  # 1 - 2/5 = 0.6, not > 0.6
    (decided,) = of(CT.ReviewDecided, kit.events(t))
    assert decided.score == pytest.approx(0.6) and decided.accepted is False
    assert kit.state(t) is S.ABORTED_LOW_GRADE
    lenient = make_kit(num_reviews_initial_prompt=5, acceptance_threshold_initial_prompt=0.59)
    t2 = lenient.prompt()
    lenient.review(t2, t2, spam_votes=2)
    assert lenient.state(t2) is S.PROMPT_LOTTERY_WAITING


def test_lang_mismatch_counts_against_acceptance(kit):
    t = kit.prompt()
    kit.label(t, t, spam=1.0)
    kit.label(t, t, lang_mismatch=1.0)
    kit.label(t, t)
    assert kit.message(t, t).review_score == pytest.approx(1 / 3)
    assert kit.state(t) is S.ABORTED_LOW_GRADE


def test_rejected_reply_stops_counting_and_leaves_tree_growing(kit):
    t = kit.growing_tree()
    kit.accepted_reply(t, t)
    bad = kit.reply(t, t)
    kit.review(t, bad, spam_votes=2)
    assert kit.message(t, bad).review_result is False
    assert domain.model.tree_rules.tree_size(kit.tree(t)) == 2
    assert kit.state(t) is S.GROWING
    kit.accepted_reply(t, t)
    assert kit.state(t) is S.RANKING


def test_growth_ends_only_when_goal_reached_and_nothing_awaits_review(kit):
    t = kit.growing_tree()
    kit.accepted_reply(t, t)
    a2, a3 = kit.reply(t, t), kit.reply(t, t)
    kit.review(t, a2)
    assert domain.model.tree_rules.tree_size(kit.tree(t)) == 3 and kit.state(t) is S.GROWING
    v = kit.version(t)
    kit.review(t, a3, spam_votes=2)
    assert state_moves(kit.events(t, v))[0] == (S.GROWING, S.RANKING)


def test_free_and_report_labels_are_not_reviews(kit):
    author = kit.user()
    t = kit.prompt(author)
    reporter = kit.user()
    with pytest.raises(SelfLabelingError):  # one's own message, free or not (issue 13)
        kit.app.submit_labels(
            actor=author, tree_id=t, message_id=t, labels={"spam": 1.0}, kind="free"
        )
    for _ in range(2):
        kit.app.submit_labels(
            actor=kit.user(), tree_id=t, message_id=t, labels={"spam": 1.0}, kind="free"
        )
    v = kit.version(t)
    kit.app.submit_labels(
        actor=reporter, tree_id=t, message_id=t, labels={"pii": 1.0}, kind="report"
    )
    submitted, toggled = kit.events(t, v)
    assert submitted.kind == "report"
    assert (toggled.emoji, toggled.added, toggled.user_id) == ("red_flag", True, reporter.user_id)
    root = kit.message(t, t)
    assert root.review_count == 0 and root.reviews == {} and len(root.free_labels) == 3
    assert not of(CT.ReviewDecided, kit.events(t)) and kit.state(t) is S.INITIAL_PROMPT_REVIEW


# ================================================================== ranking and scoring
def test_ranking_only_in_ranking_state(kit):
    t = kit.growing_tree(goal_tree_size=10)
    a1, a2 = kit.accepted_reply(t, t), kit.accepted_reply(t, t)
    with kit.refused(E.TREE_NOT_IN_RANKING_STATE, t):
        kit.rank(t, t, [a1, a2])


@pytest.mark.parametrize("order", ["missing", "extra", "duplicate", "unknown"])
def test_ranking_must_be_a_permutation_of_the_rankable_siblings(kit, order):
    t, (a1, a2) = kit.ranking_tree()
    late = kit.reply(t, t)
    ids = {
        "missing": [a1],
        "extra": [a1, a2, late],
        "duplicate": [a1, a2, a1],
        "unknown": [a1, uuid4()],
    }[order]
    with kit.refused(E.INVALID_RANKING_VALUE, t):
        kit.rank(t, t, ids)


def test_no_self_ranking_and_one_ranking_per_user(kit):
    t, (a1, a2) = kit.ranking_tree()
    with kit.refused(E.SELF_RANKING, t):
        kit.rank(t, t, [a1, a2], author_of(kit, t, a1))
    ranker = kit.rank(t, t, [a1, a2])
    with kit.refused(E.DUPLICATE_RANKING, t):
        kit.rank(t, t, [a2, a1], ranker)


def test_each_rankable_parent_needs_its_rankings(kit):
    t = kit.growing_tree(goal_tree_size=6)
    a1, a2 = kit.accepted_reply(t, t), kit.accepted_reply(t, t)
    p = kit.accepted_reply(t, a1)
    b1, b2 = kit.accepted_reply(t, p), kit.accepted_reply(t, p)
    assert kit.state(t) is S.RANKING
    root_orders = [[a1, a2], [a2, a1], [a2, a1]]
    for order in root_orders:
        kit.rank(t, t, order)
    assert kit.state(t) is S.RANKING  # p is not ranked yet
    with kit.refused(E.RANKING_COMPLETE, t):
        kit.rank(t, t, [a1, a2])
    p_orders = [[b1, b2], [b1, b2], [b2, b1]]
    kit.rank(t, p, p_orders[0])
    kit.rank(t, p, p_orders[1])
    v = kit.version(t)
    kit.rank(t, p, p_orders[2])
    events = kit.events(t, v)
    assert names(events) == ["RankingSubmitted", "StateChanged", "TreeScored", "StateChanged"]
    assert state_moves(events) == [
        (S.RANKING, S.READY_FOR_SCORING),
        (S.READY_FOR_SCORING, S.READY_FOR_EXPORT),
    ]
    expected = {str(t): consensus(root_orders), str(p): consensus(p_orders)}
    assert events[2].ranks == expected
    tree = kit.tree(t)
    for order in expected.values():
        assert [tree.messages[m].rank for m in order] == [0, 1]
    assert tree.messages[a1].ranking_count == 3


def test_parent_needs_two_rankable_children(kit):
    t = kit.growing_tree(goal_tree_size=5)
    a1 = kit.accepted_reply(t, t)
    kit.accepted_reply(t, t)
    p = kit.accepted_reply(t, a1)
    rejected = kit.reply(t, p)
    b1 = kit.accepted_reply(t, p)
    kit.review(t, rejected, spam_votes=2)
    assert kit.state(t) is S.RANKING
    for parent, order in ((p, [b1]), (p, [b1, rejected]), (a1, [p]), (b1, [])):
        with kit.refused(E.NO_REPLIES_FOUND, t):
            kit.rank(t, parent, order)


def test_tree_with_nothing_to_rank_goes_straight_to_export(kit):
    t = kit.growing_tree()
    a = kit.accepted_reply(t, t)
    p = kit.reply(t, a)
    v = kit.version(t)
    kit.review(t, p)
    events = kit.events(t, v)
    assert state_moves(events) == [
        (S.GROWING, S.RANKING),
        (S.RANKING, S.READY_FOR_SCORING),
        (S.READY_FOR_SCORING, S.READY_FOR_EXPORT),
    ]
    assert of(CT.TreeScored, events)[0].ranks == {}


def test_scoring_failure_is_recorded_and_retry_scores(kit, monkeypatch):
    t, (a1, a2) = kit.ranking_tree()

    def broken(rankings):
        raise RuntimeError("consensus exploded")

    monkeypatch.setattr(domain.model.tree_rules, "consensus", broken)
    kit.rank(t, t, [a1, a2])
    kit.rank(t, t, [a1, a2])
    v = kit.version(t)
    kit.rank(t, t, [a2, a1])
    events = kit.events(t, v)
    assert names(events) == ["RankingSubmitted", "StateChanged", "ScoringFailed", "StateChanged"]
    assert "consensus exploded" in events[2].error
    assert kit.state(t) is S.SCORING_FAILED and kit.message(t, a1).rank is None
    monkeypatch.undo()
    with kit.refused(E.TREE_NOT_IN_RANKING_STATE, t):
        kit.rank(t, t, [a1, a2])
    copy = kit.tree(t)  # a retry under a stricter config finds the rankings short
    copy.retry_scoring(config=small_config(num_required_rankings=4))
    assert state_moves(copy.collect_events()) == [(S.SCORING_FAILED, S.RANKING)]
    v = kit.version(t)
    kit.app.retry_scoring(tree_id=t)
    events = kit.events(t, v)
    assert state_moves(events) == [
        (S.SCORING_FAILED, S.READY_FOR_SCORING),
        (S.READY_FOR_SCORING, S.READY_FOR_EXPORT),
    ]
    assert of(CT.TreeScored, events)[0].ranks == {str(t): [a1, a2]}
    with kit.refused(E.INVALID_STATE_TRANSITION, t):
        kit.app.retry_scoring(tree_id=t)
