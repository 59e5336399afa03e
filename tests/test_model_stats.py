"""Model statistics: replies, acceptance, mean consensus rank, win rate against humans."""

from __future__ import annotations

import pytest

from projections.model_stats import model_leaderboard
from tests.projection_helpers import SPAM, World


def model_reply(w: World, author: str, tree, parent, model: str, text: str):
    return w.app.add_reply(
        actor=w.users[author],
        tree_id=tree,
        parent_id=parent,
        text=text,
        synthetic=True,
        model_name=model,
    ).id


def rank(w: World, tree, parent, order) -> None:
    for ranker in "gh":  # both rankers agree, so the consensus is this order
        w.app.submit_ranking(
            actor=w.users[ranker], tree_id=tree, parent_id=parent, ranked_message_ids=order
        )


def two_scored_trees(w: World):
    """Tree 1: human h1, alpha a1, beta b1 ranked [a1, h1, b1].
    Tree 2 (goal 3): human h2, beta b2, alpha a2 (rejected as spam) ranked [b2, h2]."""
    one = w.growing_tree("a", "bcd")
    h1 = w.reply("e", one, one, "human one")
    a1 = model_reply(w, "f", one, one, "alpha", "alpha one")
    b1 = model_reply(w, "c", one, one, "beta", "beta one")
    for message in (h1, a1, b1):
        w.label("bcd" if message != b1 else "bde", one, message)
    rank(w, one, one, [a1, h1, b1])

    two = w.app.create_prompt(actor=w.users["b"], text="second prompt", goal_tree_size=3).id
    w.label("cde", two, two)
    w.app.activate_tree(tree_id=two)
    h2 = w.reply("e", two, two, "human two")
    b2 = model_reply(w, "f", two, two, "beta", "beta two")
    a2 = model_reply(w, "a", two, two, "alpha", "alpha two")
    w.label("cde", two, a2, SPAM)
    w.label("cdg", two, h2)
    w.label("cde", two, b2)
    rank(w, two, two, [b2, h2])
    return (one, two), (h1, a1, b1), (h2, b2, a2)


def test_model_leaderboard_by_hand(tmp_path):
    w = World(tmp_path, goal_tree_size=4, max_children_count=3)
    (one, two), _, _ = two_scored_trees(w)
    assert w.app.get_tree(one).state.value == w.app.get_tree(two).state.value == "ready_for_export"
    rows = model_leaderboard(w.conn)
    assert [r["model_name"] for r in rows] == ["alpha", "beta"]  # best win rate first
    alpha, beta = rows
    # alpha: a1 accepted and ranked first (beats h1); a2 rejected, never ranked.
    assert alpha == {
        "model_name": "alpha",
        "replies": 2,
        "reviewed": 2,
        "accepted": 1,
        "acceptance_rate": 0.5,
        "ranked": 1,
        "mean_rank": 0.0,
        "human_pairs": 1,
        "wins": 1,
        "win_rate": 1.0,
    }
    # beta: b1 ranked last in tree 1 (loses to h1), b2 ranked first in tree 2 (beats h2).
    assert beta == {
        "model_name": "beta",
        "replies": 2,
        "reviewed": 2,
        "accepted": 2,
        "acceptance_rate": 1.0,
        "ranked": 2,
        "mean_rank": pytest.approx((2 + 0) / 2),
        "human_pairs": 2,
        "wins": 1,
        "win_rate": 0.5,
    }


def test_deleted_replies_leave_the_counts_but_not_the_scored_pairs(tmp_path):
    w = World(tmp_path, goal_tree_size=4, max_children_count=3)
    (one, _), (_, a1, _), _ = two_scored_trees(w)
    w.app.delete_message(tree_id=one, message_id=a1, actor=w.users["a"])
    alpha = {r["model_name"]: r for r in model_leaderboard(w.conn)}["alpha"]
    assert (alpha["replies"], alpha["accepted"], alpha["ranked"]) == (1, 0, 0)
    assert alpha["acceptance_rate"] == 0.0 and alpha["mean_rank"] is None
    assert (alpha["human_pairs"], alpha["win_rate"]) == (1, 1.0)  # as it was scored
    w.app.undelete_message(tree_id=one, message_id=a1, actor=w.users["a"])
    alpha = {r["model_name"]: r for r in model_leaderboard(w.conn)}["alpha"]
    assert (alpha["replies"], alpha["accepted"], alpha["mean_rank"]) == (2, 1, 0.0)


def test_only_human_replies_are_opponents(tmp_path):
    """A synthetic reply without a model name is neither a model nor a human."""
    w = World(tmp_path, goal_tree_size=4, max_children_count=3)
    tree = w.growing_tree("a", "bcd")
    m = model_reply(w, "e", tree, tree, "alpha", "alpha")
    other = model_reply(w, "f", tree, tree, "", "synthetic without a model")
    h = w.reply("c", tree, tree, "human")
    for message in (m, other, h):
        w.label("bdg" if message == h else "bcd", tree, message)
    rank(w, tree, tree, [other, h, m])
    rows = model_leaderboard(w.conn)
    assert [r["model_name"] for r in rows] == ["alpha"]
    assert (rows[0]["human_pairs"], rows[0]["wins"], rows[0]["win_rate"]) == (1, 0, 0.0)
    assert rows[0]["mean_rank"] == 2.0


def test_no_models_no_rows(tmp_path):
    w = World(tmp_path)
    w.growing_tree("a", "bcd")
    assert model_leaderboard(w.conn) == []
