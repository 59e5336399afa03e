"""Annotator agreement: Kendall tau of rankers against the consensus, Krippendorff's alpha."""

from __future__ import annotations

import random
from itertools import permutations

import pytest

from projections.agreement import agreement, interval_alpha, label_agreement, ranker_agreement
from tests.projection_helpers import World

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4-observer x
# 12-unit example with missing values (None); published: nominal 0.743, interval 0.849.
OBSERVERS = (
    (1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None),
    (1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3),
    (None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None),
    (1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None),
)
UNITS = [[v for v in column if v is not None] for column in zip(*OBSERVERS)]


def brute_alpha(units, delta):
    """Alpha straight from its definition: every ordered pair of values, within units
    (weighted 1 / (m_u - 1)) and across all pairable values."""
    units = [u for u in units if len(u) >= 2]
    n = sum(len(u) for u in units)
    observed = (
        sum(sum(delta(a, b) for a, b in permutations(u, 2)) / (len(u) - 1) for u in units) / n
    )
    pooled = [v for u in units for v in u]
    expected = sum(delta(a, b) for a, b in permutations(pooled, 2)) / (n * (n - 1))
    return 1 - observed / expected


def nominal(a, b):
    return float(a != b)


def test_alpha_of_a_small_example_by_hand():
    # Pooled values 1,1,0,0,0,1 (n = 6). Only the third unit disagrees: its ordered pairs
    # (0,1), (1,0) give D_o = (1/6) * 2/(2-1) = 1/3. Across the pool, 3 ones x 3 zeros in
    # both orders: D_e = 18 / (6*5) = 0.6. alpha = 1 - (1/3)/0.6 = 4/9.
    assert interval_alpha([[1, 1], [0, 0], [0, 1]]) == pytest.approx(4 / 9)
    assert interval_alpha([[1, 1], [0, 0], [0, 1], [1]]) == pytest.approx(4 / 9)  # unpairable
    assert interval_alpha([[1, 1], [0, 0]]) == pytest.approx(1.0)
    assert interval_alpha([[0.5, 0.5], [0.5, 0.5]]) is None  # no variation: undefined
    assert interval_alpha([[1]]) is None


def test_alpha_matches_krippendorffs_published_example():
    assert brute_alpha(UNITS, nominal) == pytest.approx(0.743, abs=5e-4)  # the checker checks out
    assert interval_alpha(UNITS) == pytest.approx(0.849, abs=5e-4)
    assert interval_alpha(UNITS) == pytest.approx(brute_alpha(UNITS, lambda a, b: (a - b) ** 2))
    # Interval alpha does not change when every value is mapped a -> (a - 1) / 4 (likert 0..1).
    assert interval_alpha([[(v - 1) / 4 for v in u] for u in UNITS]) == pytest.approx(
        interval_alpha(UNITS)
    )


def test_interval_alpha_of_yes_no_labels_is_the_nominal_alpha():
    rng = random.Random(3)
    units = [[rng.choice((0, 1, 1)) for _ in range(rng.randint(1, 4))] for _ in range(30)]
    assert interval_alpha(units) == pytest.approx(brute_alpha(units, nominal))


def test_label_agreement_over_task_reviews(tmp_path):
    """The published example as reviews: 12 prompts, observers b..e, quality = (v - 1) / 4."""
    w = World(tmp_path, num_reviews_initial_prompt=5)  # never decided: all four may review
    prompts = [w.prompt("a", f"prompt {k}") for k in range(12)]
    for observer, values in zip("bcde", OBSERVERS):
        for prompt, value in zip(prompts, values):
            if value is not None:
                w.app.submit_labels(
                    actor=w.users[observer],
                    tree_id=prompt,
                    message_id=prompt,
                    labels={"quality": (value - 1) / 4, "spam": 0.0},
                )
    # Free labels and reports are not reviews: the single-review prompt stays unpairable.
    w.app.submit_labels(
        actor=w.users["f"],
        tree_id=prompts[11],
        message_id=prompts[11],
        kind="free",
        labels={"quality": 0.0},
    )
    rows = {r["label"]: r for r in label_agreement(w.conn)}
    quality = rows["quality"]
    assert (quality["units"], quality["values"], quality["widget"]) == (11, 40, "likert")
    assert quality["alpha"] == pytest.approx(0.8491, abs=1e-4)
    assert rows["spam"]["alpha"] is None  # everyone said 0: no variation, alpha undefined
    assert rows["spam"]["units"] == 11


def test_rankers_kendall_tau_against_the_consensus(tmp_path):
    w = World(tmp_path, goal_tree_size=4, max_children_count=3, num_required_rankings=3)
    tree = w.growing_tree("a", "bcd")
    x, y, z = (w.reply(author, tree, tree, f"reply by {author}") for author in "efa")
    for reply in (x, y, z):
        w.label("bcd", tree, reply)
    # g, h: x > y > z. c swaps x and y. Every pair is won 2:1 or 3:0 in x > y > z, so that
    # is the consensus; c agrees on (x,z) and (y,z) but not (x,y): tau = (2 - 1) / 3.
    for ranker, order in (("g", [x, y, z]), ("h", [x, y, z]), ("c", [y, x, z])):
        w.app.submit_ranking(
            actor=w.users[ranker], tree_id=tree, parent_id=tree, ranked_message_ids=order
        )
    assert w.app.get_tree(tree).state.value == "ready_for_export"
    rows = ranker_agreement(w.conn)
    by_name = {r["username"]: r for r in rows}
    assert by_name["g"]["mean_tau"] == by_name["h"]["mean_tau"] == 1.0
    assert by_name["c"]["mean_tau"] == pytest.approx(1 / 3)
    assert by_name["c"]["rankings"] == 1
    assert rows[-1]["username"] == "c"  # the most agreeing first
    result = agreement(w.conn)
    assert result["rankings_compared"] == 3
    assert result["mean_tau"] == pytest.approx((1 + 1 + 1 / 3) / 3)
    assert ranker_agreement(w.conn, min_rankings=2) == []


def test_no_tau_before_scoring(tmp_path):
    w = World(tmp_path, goal_tree_size=3, num_required_rankings=3)
    tree = w.growing_tree("a", "bcd")
    r1, r2 = w.reply("e", tree, tree, "one"), w.reply("f", tree, tree, "two")
    w.label("bcd", tree, r1)
    w.label("bcd", tree, r2)
    w.app.submit_ranking(
        actor=w.users["g"], tree_id=tree, parent_id=tree, ranked_message_ids=[r1, r2]
    )
    assert agreement(w.conn)["rankings_compared"] == 0  # two more rankings are needed
