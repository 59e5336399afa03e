"""Rules decide, the aggregate records: the tree rules and guards are pure functions of a
tree's state (they return decisions or raise, and never trigger an event), and the import
reads a file into a plan without touching an aggregate."""

from __future__ import annotations

from uuid import UUID

import pytest

import domain.model.tree_rules
from domain.model import tree_guards as guards
from domain.model import tree_rules as rules
from domain.model.actor import Actor
from domain.model.consensus import consensus
from domain.model.errors import DomainError
from domain.model.labels import LabelKind
from domain.model.states import TreeState as S
from domain.model.tree_import import ImportPlan, plan_import
from tests.conftest import small_config

STATES = [
    S.INITIAL_PROMPT_REVIEW,
    S.PROMPT_LOTTERY_WAITING,
    S.GROWING,
    S.RANKING,
    S.ABORTED_LOW_GRADE,
    S.HALTED_BY_MODERATOR,
]


def _ask_everything(tree, config) -> list[object]:
    """Every decision and guard, on every message, with answers and refusals collected."""
    answers: list[object] = []
    stranger = Actor(UUID(int=0xF00), UUID(int=0xC11E))
    calls = [
        lambda: rules.growth_move(tree),
        lambda: rules.scoring(tree, config),
        lambda: rules.activation_move(tree, config, "prompt_lottery"),
        lambda: rules.resumed_prompt_move(tree),
        lambda: rules.orphan_move(tree),
        lambda: rules.resume_target(tree),
        lambda: guards.check_halt(tree),
        lambda: guards.check_resume(tree),
        lambda: guards.check_retry_scoring(tree),
    ]
    for message in tree.messages.values():
        calls += [
            lambda m=message: rules.review_verdict(m, config),
            lambda m=message: rules.moderation(tree, m, "red_flag", config),
            lambda m=message: rules.emoji_changes(m, "+1", stranger, "toggle"),
            lambda m=message: guards.check_reply(tree, m, stranger, config, None),
            lambda m=message: guards.check_labels(
                tree, m, {"spam": 0.0}, stranger, LabelKind.TASK, None, None
            ),
            lambda m=message: guards.check_ranking(tree, m, list(m.children), stranger, config),
            lambda m=message: guards.check_undelete(tree, [m], config),
        ]
    for call in calls:
        try:
            answers.append(call())
        except DomainError as error:
            answers.append(type(error))
    return answers


@pytest.mark.parametrize("state", STATES)
def test_rules_and_guards_never_change_the_tree(kit, state):
    tree = kit.tree(kit.tree_in(state))
    before = (tree.version, tree.as_dict())
    first = _ask_everything(tree, kit.config)
    assert tree.collect_events() == []
    assert (tree.version, tree.as_dict()) == before
    assert _ask_everything(tree, kit.config) == first  # same state, same answers


def test_the_rules_name_the_follow_ups_they_want(kit):
    growing = kit.tree(kit.tree_in(S.GROWING))
    assert rules.growth_move(growing) is None  # only the prompt so far, goal not reached
    assert rules.activation_move(growing, kit.config, "x") is None
    waiting = kit.tree(kit.tree_in(S.PROMPT_LOTTERY_WAITING))
    assert rules.activation_move(waiting, kit.config, "backlog") == rules.Move(S.GROWING, "backlog")
    review = kit.tree(kit.prompt())
    assert rules.review_verdict(review.root, kit.config) is None  # no reviews yet
    verdict = rules.Verdict(accepted=False, score=0.1, review_count=3)
    assert rules.prompt_move(verdict) == rules.Move(S.ABORTED_LOW_GRADE, "prompt_rejected")


def test_scoring_is_decided_from_complete_rankings(kit, monkeypatch):
    t, (a1, a2) = kit.ranking_tree()

    def broken(rankings):
        raise RuntimeError("no consensus today")

    monkeypatch.setattr(domain.model.tree_rules, "consensus", broken)
    for order in ([a1, a2], [a1, a2], [a2, a1]):
        kit.rank(t, t, order)
    tree = kit.tree(t)
    assert tree.state is S.SCORING_FAILED
    failed = rules.scoring(tree, kit.config)
    assert failed == rules.Scores({}, "RuntimeError: no consensus today")
    monkeypatch.undo()
    expected = consensus([ids for _, ids, _ in tree.root.rankings])
    assert rules.scoring(tree, kit.config) == rules.Scores({str(t): expected})
    stricter = small_config(num_required_rankings=4)
    assert rules.scoring(tree, stricter) == rules.Move(S.RANKING, "rankings_incomplete")
    assert tree.collect_events() == []


def _export() -> dict:
    root, a1, a2 = (str(UUID(int=n)) for n in (1, 2, 3))
    reply = {"role": "assistant", "review_result": True, "review_count": 3}
    return {
        "message_tree_id": root,
        "tree_state": "ready_for_export",
        "prompt": {
            "message_id": root,
            "text": "a prompt",
            "role": "prompter",
            "lang": "de",
            "review_result": True,
            "emojis": {"+1": 2},
            "replies": [
                {**reply, "message_id": a1, "text": "one", "rank": 1},
                {**reply, "message_id": a2, "text": "two", "rank": 0, "deleted": True},
            ],
        },
    }


def test_an_import_is_planned_without_an_aggregate():
    plan = plan_import(_export(), origin="oasst")
    assert isinstance(plan, ImportPlan)
    root, a1, a2 = plan.messages
    assert [m.id for m in plan.messages] == [UUID(int=1), UUID(int=2), UUID(int=3)]
    assert (a1.parent_id, a1.depth, a1.lang, a2.deleted) == (root.id, 1, "de", True)
    assert root.review == (True, 0) and a1.review == (True, 3)
    assert [emoji for emoji, _ in root.clicks] == ["+1", "+1"]
    assert plan_import(_export()).messages[0].clicks == root.clicks  # same stand-in clickers
    assert plan.ranks == {str(root.id): [a2.id, a1.id]}
    assert (plan.start, plan.moves, plan.origin) == (S.READY_FOR_EXPORT, [], "oasst")
    growing = plan_import(_export(), state="growing")
    assert growing.ranks == {} and growing.start is S.GROWING
