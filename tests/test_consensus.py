"""Tests for domain.model.consensus (Tideman ranked pairs as Open-Assistant runs it)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.model.consensus import consensus, kendall_tau, ranked_pairs


def U(k: int) -> uuid.UUID:
    return uuid.UUID(int=k)


# Ascending id order: A < B < C < D < E.
A, B, C, D, E = (U(k) for k in range(1, 6))


# --- ranked_pairs ---------------------------------------------------------------


def test_unanimous_voters_give_their_order():
    order = [C, A, D, B]
    assert ranked_pairs([order] * 3) == order


def test_single_voter_order_is_kept():
    assert ranked_pairs([[E, B, D, A, C]]) == [E, B, D, A, C]


def test_single_id_is_returned():
    assert ranked_pairs([[A], [A]]) == [A]


@pytest.mark.parametrize("votes", [[[B, A], [A, B]], [[A, B], [B, A]]])
def test_exact_tie_goes_to_smaller_id_whatever_the_voter_order(votes):
    assert ranked_pairs(votes) == [A, B]


def test_tie_below_a_clear_winner_goes_to_smaller_id():
    # C beats both 2:0; A vs B is 1:1 -> A first by id.
    assert ranked_pairs([[C, B, A], [C, A, B]]) == [C, A, B]


def test_tied_pairs_are_locked_not_left_out():
    # c>a>b and b>c>a: c beats a 2:0; a-b and b-c are both 1:1.
    # Sorted candidates: (c,a) 2, then margin-0 pairs in (i, j) order: (a,b), (b,a),
    # (b,c), (c,b). Lock c>a, lock a>b; b>a and b>c would close cycles; c>b locks.
    # -> c, a, b. Had ties been left out (margin > 0 only), only c>a would be locked
    # and the read-off would start with the smallest unbeaten id, b: b, c, a.
    assert ranked_pairs([[C, A, B], [B, C, A]]) == [C, A, B]


def test_equal_margin_cycle_follows_id_order():
    # a>b>c, b>c>a, c>a>b: a beats b 2:1, b beats c 2:1, c beats a 2:1 (all margin 1).
    # Candidates in (i, j) order: (a,b), (b,c), (c,a). Lock a>b, lock b>c; c>a would
    # close a cycle and is skipped -> a, b, c.
    votes = [[A, B, C], [B, C, A], [C, A, B]]
    assert ranked_pairs(votes) == [A, B, C]


def test_equal_margin_cycle_against_id_order():
    # c>b>a, b>a>c, a>c>b: b beats a 2:1, a beats c 2:1, c beats b 2:1 (all margin 1).
    # Candidates in (i, j) order: (a,c) [i=0], (b,a) [i=1], (c,b) [i=2].
    # Lock a>c, lock b>a; c>b would close b>a>c>b and is skipped -> b, a, c.
    # So "by id order" means the first-enumerated pairs win, not "smallest id first".
    votes = [[C, B, A], [B, A, C], [A, C, B]]
    assert ranked_pairs(votes) == [B, A, C]


def test_weighted_cycle_drops_weakest_pair():
    # 4x a>b>c, 3x b>c>a, 2x c>a>b (9 voters):
    #   a over b: 4+2=6 vs 3 -> margin 3
    #   b over c: 4+3=7 vs 2 -> margin 5
    #   c over a: 3+2=5 vs 4 -> margin 1
    # Lock b>c (5), lock a>b (3); c>a (1) would close a cycle -> a, b, c.
    votes = [[A, B, C]] * 4 + [[B, C, A]] * 3 + [[C, A, B]] * 2
    assert ranked_pairs(votes) == [A, B, C]


def test_weighted_cycle_overrides_id_tie_break():
    # Same cycle shape as test_equal_margin_cycle_against_id_order, but weighted:
    # 3x a>c>b, 2x c>b>a, 2x b>a>c (7 voters):
    #   a over c: 3+2=5 vs 2 -> margin 3
    #   c over b: 3+2=5 vs 2 -> margin 3
    #   b over a: 2+2=4 vs 3 -> margin 1
    # Lock a>c, lock c>b; b>a is weakest and closes the cycle -> a, c, b
    # (with equal margins the answer would have been b, a, c).
    votes = [[A, C, B]] * 3 + [[C, B, A]] * 2 + [[B, A, C]] * 2
    assert ranked_pairs(votes) == [A, C, B]


def test_works_with_plain_orderable_ids():
    assert ranked_pairs([["y", "x"], ["x", "y"]]) == ["x", "y"]


def test_uuid_order_is_hex_order():
    lo = uuid.UUID("0fffffff-ffff-ffff-ffff-ffffffffffff")
    hi = uuid.UUID("f0000000-0000-0000-0000-000000000000")
    assert ranked_pairs([[hi, lo], [lo, hi]]) == [lo, hi]


@pytest.mark.parametrize(
    "votes",
    [
        [],  # no voters
        [[]],  # no ids
        [[A, B], [A, C]],  # different ids
        [[A, B], [A]],  # one voter ranked fewer
        [[A, B, A], [A, B]],  # duplicate inside a ranking
    ],
)
def test_ranked_pairs_rejects_bad_input(votes):
    with pytest.raises(ValueError):
        ranked_pairs(votes)


# --- consensus (partial rankings) ------------------------------------------------


def test_partial_rankings_use_only_common_ids():
    # Common ids: {b, c}. Reduced votes: [b,c], [b,c], [c,b] -> b beats c 2:1.
    votes = [[A, B, C], [B, C], [C, A, B, D]]
    assert consensus(votes) == [B, C]


def test_partial_rankings_keep_each_voters_relative_order():
    # Common ids {a, b, c}; reduced: [c,a,b], [c,a,b], [b,c,a] -> c>a 3:0, c>b 2:1,
    # a>b 2:1 -> c, a, b.
    votes = [[C, D, A, B], [E, C, A, B], [B, C, D, E, A]]
    assert consensus(votes) == [C, A, B]


def test_complete_rankings_match_ranked_pairs():
    votes = [[A, B, C]] * 4 + [[B, C, A]] * 3 + [[C, A, B]] * 2
    assert consensus(votes) == ranked_pairs(votes) == [A, B, C]


@pytest.mark.parametrize(
    "votes",
    [
        [],  # no voters
        [[A, B], [C, A]],  # only {a} in common
        [[A, B], [C, D]],  # nothing in common
        [[A]],  # a single id
    ],
)
def test_consensus_none_below_two_common_ids(votes):
    assert consensus(votes) is None


def test_consensus_rejects_duplicate_ids():
    with pytest.raises(ValueError):
        consensus([[A, B, A], [A, B]])


# --- properties ----------------------------------------------------------------

IDS = [uuid.UUID(int=k) for k in range(1, 7)]


@st.composite
def complete_votes(draw):
    n = draw(st.integers(min_value=1, max_value=6))
    ids = IDS[:n]
    voters = draw(st.integers(min_value=1, max_value=7))
    return [draw(st.permutations(ids)) for _ in range(voters)]


@st.composite
def partial_votes(draw):
    voters = draw(st.integers(min_value=1, max_value=7))
    votes = []
    for _ in range(voters):
        subset = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=6))
        votes.append(draw(st.permutations(subset)))
    return votes


@settings(max_examples=300)
@given(complete_votes())
def test_ranked_pairs_returns_a_permutation(votes):
    assert sorted(ranked_pairs(votes)) == sorted(votes[0])


@settings(max_examples=300)
@given(partial_votes())
def test_consensus_returns_a_permutation_of_common_ids(votes):
    common = set(votes[0]).intersection(*votes[1:])
    result = consensus(votes)
    if len(common) < 2:
        assert result is None
    else:
        assert result is not None
        assert sorted(result) == sorted(common)


@settings(max_examples=300)
@given(complete_votes())
def test_condorcet_winner_is_first(votes):
    def beats(x, y):
        above = sum(v.index(x) < v.index(y) for v in votes)
        return 2 * above > len(votes)  # strict majority

    ids = votes[0]
    winners = [w for w in ids if all(beats(w, o) for o in ids if o != w)]
    if winners:
        assert ranked_pairs(votes)[0] == winners[0]


@settings(max_examples=200)
@given(complete_votes())
def test_ranked_pairs_ignores_voter_order(votes):
    assert ranked_pairs(votes) == ranked_pairs(votes[::-1])


# --- kendall_tau ---------------------------------------------------------------


def test_kendall_tau_identical_is_one():
    assert kendall_tau([A, B, C, D], [A, B, C, D]) == 1.0


def test_kendall_tau_reversed_is_minus_one():
    assert kendall_tau([A, B, C, D], [D, C, B, A]) == -1.0


def test_kendall_tau_one_swap():
    # 6 pairs, only (a,b) discordant: (5 - 1) / 6 = 2/3.
    assert kendall_tau([A, B, C, D], [B, A, C, D]) == pytest.approx(2 / 3)


def test_kendall_tau_ignores_items_not_in_both():
    # Common {a, b, c}: b,c concordant; a,b and a,c discordant -> (1 - 2) / 3.
    assert kendall_tau([A, E, B, C], [B, C, D, A]) == pytest.approx(-1 / 3)


@pytest.mark.parametrize("a, b", [([A], [A]), ([A, B], [C, D]), ([], [])])
def test_kendall_tau_fewer_than_two_common_is_zero(a, b):
    assert kendall_tau(a, b) == 0.0
