"""Ranking consensus: Tideman's ranked pairs, as Open-Assistant runs it.

Each voter submits an ordering of the same ids (best first). The consensus is built in
four steps:

1. Sort the ids ascending; that index order is used for every tie-break below.
2. Count, for every ordered pair (i, j), how many voters place i above j, and take the
   margin ``tally[i][j] - tally[j][i]``.
3. Candidate pairs are all (i, j), i != j, with margin >= 0, enumerated with i outer and
   j inner, then stably sorted by margin, strongest first. Each is locked in unless it
   would close a cycle among the pairs already locked.
4. Read the order off the locked graph: repeatedly take the lowest-index remaining id
   that loses no locked pair against another remaining id.

Tie rule: an exact tie (margin 0) puts both directions in the candidate list, and
equal margins keep their (i, j) enumeration order, so whichever pair comes first in id
order is locked and its reverse is then a cycle. Ties and equal-strength cycles are
therefore settled in favour of the lexicographically smaller id, never by the order in
which votes arrived.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol, TypeVar


class _Orderable(Hashable, Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=_Orderable)


def _positions(ranking: Sequence[T]) -> dict[T, int]:
    pos = {item: k for k, item in enumerate(ranking)}
    if len(pos) != len(ranking):
        raise ValueError("a ranking contains the same id more than once")
    return pos


def _reaches(edges: dict[int, set[int]], start: int, target: int) -> bool:
    stack, seen = [start], {start}
    while stack:
        node = stack.pop()
        if node == target:
            return True
        for nxt in edges[node] - seen:
            seen.add(nxt)
            stack.append(nxt)
    return False


def ranked_pairs(rankings: Sequence[Sequence[T]]) -> list[T]:
    """Consensus order of complete rankings (every ranking holds the same ids)."""
    if not rankings:
        raise ValueError("no rankings given")
    positions = [_positions(r) for r in rankings]
    ids = set(positions[0])
    if any(set(p) != ids for p in positions[1:]):
        raise ValueError("rankings do not all contain the same ids")
    if not ids:
        raise ValueError("rankings are empty")
    names = sorted(ids)
    n = len(names)
    if n == 1:
        return names

    tally = [[0] * n for _ in range(n)]
    for pos in positions:
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if pos[a] < pos[b]:
                    tally[i][j] += 1

    candidates = [
        (i, j, tally[i][j] - tally[j][i])
        for i in range(n)
        for j in range(n)
        if i != j and tally[i][j] >= tally[j][i]
    ]
    # sorted() is stable, so equal margins stay in id order: this is the tie rule.
    candidates.sort(key=lambda c: c[2], reverse=True)

    beats: dict[int, set[int]] = {i: set() for i in range(n)}
    for winner, loser, _ in candidates:
        # Locking winner->loser closes a cycle exactly when loser already reaches winner.
        if not _reaches(beats, loser, winner):
            beats[winner].add(loser)

    order: list[T] = []
    remaining = list(range(n))  # kept ascending so the first unbeaten node is the smallest id
    while remaining:
        left = set(remaining)
        beaten = {loser for w in remaining for loser in beats[w] & left}
        top = next(i for i in remaining if i not in beaten)
        order.append(names[top])
        remaining.remove(top)
    return order


def consensus(rankings: Sequence[Sequence[T]]) -> list[T] | None:
    """Ranked pairs over the ids every voter ranked; None if fewer than two remain.

    Rankings may be partial (a voter saw only some of the replies); ids missing from any
    ranking are dropped from all of them, keeping each voter's relative order.
    """
    if not rankings:
        return None
    positions = [_positions(r) for r in rankings]
    common = set(positions[0]).intersection(*positions[1:])
    if len(common) < 2:
        return None
    return ranked_pairs([[x for x in r if x in common] for r in rankings])


def kendall_tau(a: Sequence[T], b: Sequence[T]) -> float:
    """Kendall tau-a between two orderings, over the items both contain.

    1.0 for the same order, -1.0 for reversed; 0.0 when fewer than two items are shared,
    since there is then no pair to agree or disagree on.
    """
    _positions(a)  # rejects duplicates in a, as _positions(b) does for b
    pb = _positions(b)
    common = [x for x in a if x in pb]
    n = len(common)
    if n < 2:
        return 0.0
    score = 0
    # common follows a's order, so x precedes y in a: the pair is concordant iff b agrees.
    for k, x in enumerate(common):
        for y in common[k + 1 :]:
            score += 1 if pb[x] < pb[y] else -1
    return score / (n * (n - 1) / 2)
