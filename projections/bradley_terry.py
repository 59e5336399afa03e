"""Bradley-Terry strengths from pairwise outcomes, with bootstrap intervals. Pure numpy.

Player i beats player j with probability sigmoid(s_i - s_j). ``wins[i, j]`` is how often i
beat j (a tie is half a win each way). The fit maximises the log-likelihood

    sum_ij wins[i, j] * log sigmoid(s_i - s_j)  -  prior / 2 * sum_i s_i^2

The small Gaussian prior keeps every strength finite (a player who never lost would run
off to infinity) and pins the scale's origin: at the optimum the strengths sum to zero,
since the likelihood's gradient sums to zero. The objective is strictly concave, so
Newton's method with a backtracking line search finds the single optimum in a handful
of steps (tests/test_arena_bradley_terry.py checks it against scipy's optimiser).

Intervals: outcomes are grouped (by conversation tree: the votes on one tree's replies
are not independent), the groups resampled with replacement, each resample refitted,
and the 2.5th and 97.5th percentiles of each strength taken.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PRIOR = 0.01  # precision of the Gaussian prior on a strength (standard deviation 10)
ROUNDS = 200
LEVEL = 0.95


def log_posterior(s: np.ndarray, wins: np.ndarray, prior: float = PRIOR) -> float:
    diff = s[:, None] - s[None, :]
    return float(-(wins * np.logaddexp(0.0, -diff)).sum() - prior / 2 * (s @ s))


def fit(
    wins: np.ndarray, prior: float = PRIOR, tol: float = 1e-12, max_iter: int = 100
) -> np.ndarray:
    """The strengths that maximise the log posterior (they sum to zero)."""
    if prior <= 0:
        raise ValueError("prior must be > 0 (it keeps unbeaten players finite)")
    n = wins.shape[0]
    total = wins + wins.T
    won = wins.sum(axis=1)
    s = np.zeros(n)
    current = log_posterior(s, wins, prior)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(s[:, None] - s[None, :])))
        grad = won - (total * p).sum(axis=1) - prior * s
        curvature = total * p * p.T  # p.T = 1 - p
        hessian = np.diag(curvature.sum(axis=1) + prior) - curvature  # minus the Hessian
        step = np.linalg.solve(hessian, grad)
        t = 1.0
        while True:  # backtrack until the posterior does not fall
            proposed = s + t * step
            value = log_posterior(proposed, wins, prior)
            if value >= current - 1e-15 or t < 1e-8:
                break
            t /= 2
        s, current = proposed, value
        if np.abs(t * step).max() < tol:
            break
    return s


def _log_posteriors(s: np.ndarray, wins: np.ndarray, prior: float) -> np.ndarray:
    """log_posterior of each row of s (rounds, players) with its wins (rounds, n, n)."""
    diff = s[:, :, None] - s[:, None, :]
    return -(wins * np.logaddexp(0.0, -diff)).sum(axis=(1, 2)) - prior / 2 * (s * s).sum(axis=1)


def fit_many(
    wins: np.ndarray, prior: float = PRIOR, tol: float = 1e-12, max_iter: int = 100
) -> np.ndarray:
    """``fit`` of every win matrix in wins (rounds, n, n) at once: the same Newton steps and
    backtracking per matrix, batched, so a bootstrap costs a few array operations per
    iteration rather than a Python loop of fits (the dashboard and the HTTP leaderboard
    draw 200 resamples per request)."""
    if prior <= 0:
        raise ValueError("prior must be > 0 (it keeps unbeaten players finite)")
    r, n, _ = wins.shape
    total = wins + wins.transpose(0, 2, 1)
    won = wins.sum(axis=2)
    s = np.zeros((r, n))
    current = _log_posteriors(s, wins, prior)
    active = np.arange(r)
    diagonal = np.arange(n)
    for _ in range(max_iter):
        if not len(active):
            break
        sa, wa = s[active], wins[active]
        p = 1.0 / (1.0 + np.exp(-(sa[:, :, None] - sa[:, None, :])))
        grad = won[active] - (total[active] * p).sum(axis=2) - prior * sa
        curvature = total[active] * p * p.transpose(0, 2, 1)
        hessian = -curvature  # minus the Hessian, as in fit
        hessian[:, diagonal, diagonal] += curvature.sum(axis=2) + prior
        step = np.linalg.solve(hessian, grad[:, :, None])[:, :, 0]
        t = np.ones(len(active))
        proposed = sa + step
        value = _log_posteriors(proposed, wa, prior)
        while True:  # backtrack each matrix until its posterior does not fall
            bad = (value < current[active] - 1e-15) & (t >= 1e-8)
            if not bad.any():
                break
            t[bad] /= 2
            proposed[bad] = sa[bad] + t[bad, None] * step[bad]
            value[bad] = _log_posteriors(proposed[bad], wa[bad], prior)
        s[active], current[active] = proposed, value
        active = active[np.abs(t[:, None] * step).max(axis=1) >= tol]
    return s


def bootstrap(
    groups: np.ndarray, rounds: int = ROUNDS, seed: int = 0, prior: float = PRIOR
) -> np.ndarray:
    """Strengths refitted on ``rounds`` resamples of the groups: groups[g] is group g's
    win matrix; returns (rounds, players)."""
    rng = np.random.default_rng(seed)
    g = groups.shape[0]
    counts = rng.multinomial(g, np.full(g, 1.0 / g), size=rounds)  # (rounds, groups)
    resampled = np.tensordot(counts, groups, axes=1)  # (rounds, players, players)
    return fit_many(resampled, prior)


def _rate(won: float, lost: float) -> float | None:
    return won / (won + lost) if won + lost else None


def rank_players(
    players: list[str],
    groups: np.ndarray,
    *,
    anchor: str | None = None,
    rounds: int = ROUNDS,
    seed: int = 0,
    level: float = LEVEL,
    prior: float = PRIOR,
) -> dict[str, Any]:
    """Strength and interval per player (relative to ``anchor`` when it plays, so the anchor
    stands at 0), strongest first, and the pairwise win-rate matrix of the raw outcomes."""
    wins = groups.sum(axis=0)
    s = fit(wins, prior)
    samples = bootstrap(groups, rounds, seed, prior) if rounds and len(groups) else s[None, :]
    origin = players.index(anchor) if anchor in players else None
    if origin is not None:
        s = s - s[origin]
        samples = samples - samples[:, [origin]]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    order = sorted(range(len(players)), key=lambda i: (-s[i], players[i]))
    return {
        "anchor": players[origin] if origin is not None else None,
        "level": level,
        "rounds": rounds,
        "groups": int(len(groups)),
        "players": [
            {
                "player": players[i],
                "strength": float(s[i]),
                "interval": [float(low[i]), float(high[i])],
                "wins": float(wins[i].sum()),
                "comparisons": float(wins[i].sum() + wins[:, i].sum()),
            }
            for i in order
        ],
        "matrix": {
            players[i]: {
                players[j]: _rate(float(wins[i, j]), float(wins[j, i])) for j in order if j != i
            }
            for i in order
        },
    }
