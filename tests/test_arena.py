"""The arena projection: rankings as pairwise outcomes between models and people."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace
from uuid import uuid4

from projections.arena import ArenaProjection, arena_leaderboard, outcome_groups
from tests.projection_helpers import World


def model_reply(w: World, author: str, tree, model: str, text: str):
    return w.app.add_reply(
        actor=w.users[author],
        tree_id=tree,
        parent_id=tree,
        text=text,
        synthetic=True,
        model_name=model,
    ).id


def ranked_tree(w: World, author: str, orders: dict[str, list[str]]):
    """A tree with a person's reply "h" and model replies "alpha", "beta", ranked by each
    ranker in ``orders`` (names of the replies, best first)."""
    tree = w.growing_tree(author, "bcd")
    ids = {
        "h": w.reply("e", tree, tree, f"human {author}"),
        "alpha": model_reply(w, "f", tree, "alpha", f"alpha {author}"),
        "beta": model_reply(w, "c", tree, "beta", f"beta {author}"),
    }
    for message in ids.values():
        w.label("bcd" if message != ids["beta"] else "bde", tree, message)
    for ranker, order in orders.items():
        w.app.submit_ranking(
            actor=w.users[ranker],
            tree_id=tree,
            parent_id=tree,
            ranked_message_ids=[ids[n] for n in order],
        )
    return tree


def test_rankings_become_outcomes_votes_and_a_leaderboard(tmp_path) -> None:
    w = World(tmp_path, goal_tree_size=4, max_children_count=3)
    ranked_tree(w, "a", {"g": ["alpha", "h", "beta"], "h": ["h", "alpha", "beta"]})
    ranked_tree(w, "h", {"g": ["alpha", "beta", "h"], "a": ["alpha", "h", "beta"]})
    players, groups = outcome_groups(w.conn)
    assert players == ["alpha", "beta", "human"]
    wins = groups.sum(axis=0)
    # alpha over human: 3 of 4 rankings; alpha over beta: 4 of 4; human over beta: 3 of 4.
    assert wins.tolist() == [[0, 4, 3], [0, 0, 1], [1, 3, 0]]
    board = arena_leaderboard(w.conn, rounds=50)
    assert [p["player"] for p in board["players"]] == ["alpha", "human", "beta"]
    by = {p["player"]: p for p in board["players"]}
    assert by["human"]["strength"] == 0.0 and board["anchor"] == "human"
    assert by["alpha"]["strength"] > 0 > by["beta"]["strength"]
    assert (by["alpha"]["votes"], by["alpha"]["voters"]) == (4, 3)  # g twice, h, a
    assert board["groups"] == 2 and board["matrix"]["alpha"]["human"] == 0.75
    for p in board["players"]:
        assert p["interval"][0] <= p["strength"] <= p["interval"][1]


def test_people_only_rankings_leave_the_arena_empty(tmp_path) -> None:
    w = World(tmp_path, goal_tree_size=3, max_children_count=3)
    tree = w.growing_tree("a", "bcd")
    replies = [w.reply(u, tree, tree, f"reply {u}") for u in "ef"]
    for m in replies:
        w.label("bcd", tree, m)
    w.app.submit_ranking(
        actor=w.users["g"], tree_id=tree, parent_id=tree, ranked_message_ids=replies
    )
    board = arena_leaderboard(w.conn)
    assert board["players"] == [] and board["position_bias"] == []


def handler_db() -> tuple[ArenaProjection, sqlite3.Cursor]:
    projection = ArenaProjection()
    conn = sqlite3.connect(":memory:")
    for statement in projection.ddl:
        conn.execute(statement)
    return projection, conn.cursor()


def ranking(ranked, shown=None, not_rankable=False, user="u1"):
    return SimpleNamespace(
        originator_id="t1",
        user_id=user,
        ranked_message_ids=ranked,
        display_order=shown,
        not_rankable=not_rankable,
    )


def test_not_rankable_is_a_tie_and_position_bias_uses_the_display_order() -> None:
    p, c = handler_db()
    a, b, h = (str(uuid4()) for _ in range(3))
    p.on_reply(c, SimpleNamespace(message_id=a, synthetic=True, model_name="alpha"))
    p.on_reply(c, SimpleNamespace(message_id=b, synthetic=True, model_name=None))
    p.on_ranking(c, ranking([a, h], not_rankable=True))
    p.on_ranking(c, ranking([b, a, h], shown=[a, b, h]))  # b shown second, ranked first
    p.on_ranking(c, ranking([a, b], shown=[a, b], user="u2"))
    p.on_ranking(c, ranking([h, a]))  # no display order: not in the bias table
    outcomes = sorted(c.execute("SELECT winner, loser, wins FROM arena_outcomes"))
    assert outcomes == [
        ("alpha", "human", 1.5),
        ("alpha", "synthetic", 1.0),
        ("human", "alpha", 1.5),
        ("synthetic", "alpha", 1.0),
        ("synthetic", "human", 1.0),
    ]
    bias = sorted(c.execute("SELECT * FROM arena_positions"))
    # 3 shown: a (pos 0) beat h only; b (pos 1) beat both; h (pos 2) none.
    assert bias == [(2, 0, 1.0, 1), (2, 1, 0.0, 1), (3, 0, 1.0, 2), (3, 1, 2.0, 2), (3, 2, 0.0, 2)]
    board = arena_leaderboard(c.connection, rounds=20)
    assert [r["win_rate"] for r in board["position_bias"]] == [1.0, 0.0, 0.5, 1.0, 0.0]
    assert {p["player"]: p["voters"] for p in board["players"]} == {
        "alpha": 2,
        "synthetic": 2,
        "human": 1,
    }


def test_stats_models_prints_the_arena_with_position_bias(capsys) -> None:
    from api.cli.stats import _render_arena

    p, c = handler_db()
    a, b, h = (str(uuid4()) for _ in range(3))
    p.on_reply(c, SimpleNamespace(message_id=a, synthetic=True, model_name="alpha"))
    p.on_reply(c, SimpleNamespace(message_id=b, synthetic=True, model_name="beta"))
    p.on_ranking(c, ranking([b, a, h], shown=[a, b, h]))
    p.on_ranking(c, ranking([a, b], shown=[b, a], user="u2"))
    _render_arena(arena_leaderboard(c.connection, rounds=20))
    out = capsys.readouterr().out
    assert "Bradley-Terry strengths (log-odds, relative to human" in out
    assert "win rate of the row's player against the column's" in out
    bias = out.split("position bias")[1].splitlines()[2:]
    # (shown, position, comparisons, win rate): 2 shown, the second won; 3 shown: 1, 2, 0 wins.
    assert [line.split() for line in bias if line.strip()] == [
        ["2", "0", "1", "0.000"],
        ["2", "1", "1", "1.000"],
        ["3", "0", "2", "0.500"],
        ["3", "1", "2", "1.000"],
        ["3", "2", "2", "0.000"],
    ]
