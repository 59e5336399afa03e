"""Bradley-Terry fit: against scipy's optimiser on the same posterior, closed forms, bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from projections import bradley_terry as bt


def neg_posterior_and_grad(s: np.ndarray, wins: np.ndarray, prior: float):
    """Written out separately from the module: the negative log posterior and its gradient."""
    value, grad = prior / 2 * float(s @ s), prior * s.copy()
    n = len(s)
    for i in range(n):
        for j in range(n):
            if wins[i, j]:
                d = s[i] - s[j]
                value += wins[i, j] * math.log1p(math.exp(-d))
                q = 1 / (1 + math.exp(d))  # P(j beats i)
                grad[i] -= wins[i, j] * q
                grad[j] += wins[i, j] * q
    return value, grad


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_matches_scipy_to_1e6(seed: int) -> None:
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    n = 5
    truth = rng.normal(0, 1, n)
    wins = np.zeros((n, n))
    for _ in range(300):
        i, j = rng.choice(n, 2, replace=False)
        if rng.random() < 0.1:
            wins[i, j] += 0.5  # a tie
            wins[j, i] += 0.5
        elif rng.random() < 1 / (1 + math.exp(truth[j] - truth[i])):
            wins[i, j] += 1
        else:
            wins[j, i] += 1
    wins[0, :] += wins[:, 0]  # player 0 never loses: only the prior keeps it finite
    wins[:, 0] = 0
    ours = bt.fit(wins)
    ref = minimize(
        neg_posterior_and_grad,
        np.zeros(n),
        args=(wins, bt.PRIOR),
        jac=True,
        method="L-BFGS-B",
        options={"ftol": 0.0, "gtol": 1e-13, "maxcor": 30, "maxiter": 10_000},
    )
    assert np.abs(neg_posterior_and_grad(ref.x, wins, bt.PRIOR)[1]).max() < 1e-7
    assert np.abs(neg_posterior_and_grad(ours, wins, bt.PRIOR)[1]).max() < 1e-8
    np.testing.assert_allclose(ours, ref.x, atol=1e-6, rtol=0)
    assert abs(ours.sum()) < 1e-9  # the prior centres the scale


def test_two_players_closed_form() -> None:
    wins = np.array([[0.0, 30.0], [10.0, 0.0]])
    s = bt.fit(wins, prior=1e-9)
    assert s[0] - s[1] == pytest.approx(math.log(3), abs=1e-6)


def test_rank_players_anchor_intervals_and_matrix() -> None:
    # Three trees: a beats human twice, human beats b, a and b tie once.
    groups = np.zeros((3, 3, 3))
    players = ["a", "b", "human"]
    groups[0, 0, 2] = 2
    groups[1, 2, 1] = 1
    groups[2, 0, 1] = groups[2, 1, 0] = 0.5
    result = bt.rank_players(players, groups, anchor="human", rounds=100, seed=3)
    by_player = {p["player"]: p for p in result["players"]}
    assert [p["player"] for p in result["players"]] == ["a", "human", "b"]
    assert by_player["human"]["strength"] == 0 and by_player["human"]["interval"] == [0, 0]
    for p in result["players"]:
        low, high = p["interval"]
        assert low <= p["strength"] <= high
    assert by_player["a"]["interval"][1] > by_player["a"]["interval"][0]
    assert result["matrix"]["a"]["human"] == 1.0 and result["matrix"]["human"]["a"] == 0.0
    assert result["matrix"]["a"]["b"] == 0.5
    assert by_player["a"]["comparisons"] == 3 and by_player["a"]["wins"] == 2.5
    again = bt.rank_players(players, groups, anchor="human", rounds=100, seed=3)
    assert again == result  # seeded: the same intervals every time


def test_bootstrap_resamples_whole_groups() -> None:
    groups = np.zeros((2, 2, 2))
    groups[0, 0, 1] = 5  # tree 0: a wins everything
    groups[1, 1, 0] = 5  # tree 1: b wins everything
    samples = bt.bootstrap(groups, rounds=200, seed=0)
    diffs = np.round(samples[:, 0] - samples[:, 1], 6)
    # a resample holds tree 0 twice, tree 1 twice, or each once: three strengths only
    assert len(set(diffs)) == 3 and 0.0 in diffs


def test_fit_many_is_fit_per_matrix() -> None:
    rng = np.random.default_rng(7)
    wins = rng.poisson(3.0, size=(40, 4, 4)).astype(float)
    wins[:, np.arange(4), np.arange(4)] = 0
    wins[:5, 0, :] += wins[:5, :, 0]  # some matrices with an unbeaten player
    wins[:5, :, 0] = 0
    wins[5] = 0  # and one with no outcomes at all: the prior's zero
    many = bt.fit_many(wins)
    one_by_one = np.stack([bt.fit(w) for w in wins])
    np.testing.assert_allclose(many, one_by_one, atol=1e-9, rtol=0)
    assert np.all(many[5] == 0)
    with pytest.raises(ValueError):
        bt.fit_many(wins, prior=0.0)
