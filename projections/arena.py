"""The model arena: every ranking people submit, as pairwise outcomes between players.

A player is the author of a reply: its model's name for a model-written reply ("synthetic"
for one with no model name), "human" for a person's. Each ranking (RankingSubmitted,
best first) implies an outcome for every pair of ranked replies by different players (the
better-placed one wins); a ranking marked not rankable makes every such pair a tie, half a
win each way. Pairs of one player's own replies say nothing about players and are left out.

Tables (all counters, so a rebuild gives the same rows as live following):
- ``arena_replies``: model-written replies (message id -> player); any other reply is human.
- ``arena_outcomes``: per tree, winner and loser, the (fractional) wins. Per tree because
  the leaderboard's bootstrap resamples trees.
- ``arena_voters``: per player and voting user, the rankings that placed the player's
  replies against another player's.
- ``arena_positions``: per number of candidates shown and position shown at (0 = first),
  the wins and comparisons of the candidate shown there, over every ranking that recorded
  its display order (``display_order``, when the event has it): position bias.

``arena_leaderboard`` fits Bradley-Terry strengths with bootstrap intervals over trees
(projections.bradley_terry) from these tables.
"""

from __future__ import annotations

import sqlite3
from itertools import combinations
from typing import Any

import numpy as np

from domain.model.tree import ConversationTree as T
from projections import bradley_terry
from projections.base import Projection, handles, uid
from projections.user_merge import ArenaMerge

HUMAN = "human"
UNNAMED = "synthetic"


class ArenaProjection(ArenaMerge, Projection):
    name = "arena"
    views = True  # handlers take ids as text: log views and domain events both do
    replay_cost = 0.3
    tables = ("arena_replies", "arena_outcomes", "arena_voters", "arena_positions")
    ddl = (
        """CREATE TABLE IF NOT EXISTS arena_replies (
            message_id TEXT PRIMARY KEY, player TEXT NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS arena_outcomes (
            tree_id TEXT NOT NULL, winner TEXT NOT NULL, loser TEXT NOT NULL,
            wins REAL NOT NULL, PRIMARY KEY (tree_id, winner, loser)) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS arena_voters (
            player TEXT NOT NULL, user_id TEXT NOT NULL, votes INTEGER NOT NULL,
            PRIMARY KEY (player, user_id)) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS arena_positions (
            shown INTEGER NOT NULL, position INTEGER NOT NULL, wins REAL NOT NULL,
            comparisons INTEGER NOT NULL, PRIMARY KEY (shown, position)) WITHOUT ROWID""",
    )

    @handles(T.ReplyAdded)
    def on_reply(self, c: sqlite3.Cursor, e: Any) -> None:
        if e.synthetic or e.model_name:
            c.execute(
                "INSERT OR REPLACE INTO arena_replies VALUES (?, ?)",
                (uid(e.message_id), e.model_name or UNNAMED),
            )

    @handles(T.RankingSubmitted)
    def on_ranking(self, c: sqlite3.Cursor, e: Any) -> None:
        ranked = [uid(i) for i in e.ranked_message_ids]
        if len(ranked) < 2:
            return
        shown = getattr(e, "display_order", None)
        if shown:
            _positions(c, [uid(i) for i in shown], ranked, e.not_rankable)
        known = dict(
            c.execute(
                f"SELECT message_id, player FROM arena_replies"
                f" WHERE message_id IN ({','.join('?' * len(ranked))})",
                ranked,
            ).fetchall()
        )
        if not known:
            return  # people's replies only: one player, nothing to compare
        players = [known.get(i, HUMAN) for i in ranked]
        tally: dict[tuple[str, str], float] = {}
        for better, worse in combinations(players, 2):  # best first: the earlier one won
            if better == worse:
                continue
            if e.not_rankable:
                tally[(better, worse)] = tally.get((better, worse), 0.0) + 0.5
                tally[(worse, better)] = tally.get((worse, better), 0.0) + 0.5
            else:
                tally[(better, worse)] = tally.get((better, worse), 0.0) + 1.0
        if not tally:
            return
        tree = uid(e.originator_id)
        c.executemany(
            "INSERT INTO arena_outcomes VALUES (?, ?, ?, ?) ON CONFLICT (tree_id, winner, loser)"
            " DO UPDATE SET wins = wins + excluded.wins",
            [(tree, w, loser, n) for (w, loser), n in sorted(tally.items())],
        )
        c.executemany(
            "INSERT INTO arena_voters VALUES (?, ?, 1) ON CONFLICT (player, user_id)"
            " DO UPDATE SET votes = votes + 1",
            [(p, uid(e.user_id) or "") for p in sorted({p for pair in tally for p in pair})],
        )


def _positions(c: sqlite3.Cursor, shown: list[str], ranked: list[str], tie: bool) -> None:
    """Add one ranking's outcomes by the position each candidate was shown at."""
    place = {m: i for i, m in enumerate(ranked)}
    shown = [m for m in shown if m in place]
    n = len(shown)
    if n < 2:
        return
    rows = []
    for position, m in enumerate(shown):
        beaten = sum(1 for other in shown if place[other] > place[m])
        rows.append((n, position, (n - 1) / 2 if tie else float(beaten), n - 1))
    c.executemany(
        "INSERT INTO arena_positions VALUES (?, ?, ?, ?) ON CONFLICT (shown, position)"
        " DO UPDATE SET wins = wins + excluded.wins, comparisons = comparisons + excluded.comparisons",
        rows,
    )


def outcome_groups(conn: sqlite3.Connection) -> tuple[list[str], np.ndarray]:
    """The players (sorted) and, per tree, the win matrix: (trees, players, players)."""
    rows = conn.execute(
        "SELECT tree_id, winner, loser, wins FROM arena_outcomes ORDER BY tree_id"
    ).fetchall()
    players = sorted({r[1] for r in rows} | {r[2] for r in rows})
    index = {p: i for i, p in enumerate(players)}
    trees = {t: i for i, t in enumerate(dict.fromkeys(r[0] for r in rows))}
    groups = np.zeros((len(trees), len(players), len(players)))
    for tree, winner, loser, wins in rows:
        groups[trees[tree], index[winner], index[loser]] += wins
    return players, groups


def position_bias(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Win rate by the position a candidate was shown at, per number of candidates shown
    (0.5 everywhere when position does not matter)."""
    return [
        {
            "shown": shown,
            "position": position,
            "wins": wins,
            "comparisons": comparisons,
            "win_rate": wins / comparisons if comparisons else None,
        }
        for shown, position, wins, comparisons in conn.execute(
            "SELECT shown, position, wins, comparisons FROM arena_positions"
            " ORDER BY shown, position"
        )
    ]


def arena_leaderboard(
    conn: sqlite3.Connection,
    rounds: int = bradley_terry.ROUNDS,
    seed: int = 0,
    anchor: str = HUMAN,
) -> dict[str, Any]:
    """Bradley-Terry strengths (relative to people's replies when they played) with
    bootstrap intervals over trees, votes and distinct voters per player, the pairwise
    win-rate matrix and the position-bias table."""
    players, groups = outcome_groups(conn)
    result: dict[str, Any] = (
        bradley_terry.rank_players(players, groups, anchor=anchor, rounds=rounds, seed=seed)
        if players
        else {
            "anchor": None,
            "level": bradley_terry.LEVEL,
            "rounds": rounds,
            "groups": 0,
            "players": [],
            "matrix": {},
        }
    )
    voters = {
        player: (votes, distinct)
        for player, votes, distinct in conn.execute(
            "SELECT player, sum(votes), count(*) FROM arena_voters GROUP BY player"
        )
    }
    for row in result["players"]:
        row["votes"], row["voters"] = voters.get(row["player"], (0, 0))
    result["position_bias"] = position_bias(conn)
    return result


def with_strengths(
    rows: list[dict[str, Any]], board: dict[str, Any], key: str = "model_name"
) -> list[dict[str, Any]]:
    """Add each row's Bradley-Terry strength, interval, votes and distinct voters (None
    and 0 for a model nobody compared yet) and its win rates against the other players."""
    players = {p["player"]: p for p in board["players"]}
    for row in rows:
        p = players.get(row[key], {})
        row["strength"] = p.get("strength")
        row["strength_interval"] = p.get("interval")
        row["votes"] = p.get("votes", 0)
        row["voters"] = p.get("voters", 0)
        row["win_rates"] = board["matrix"].get(row[key], {})
    return rows


def model_leaderboard(conn: sqlite3.Connection, rounds: int = bradley_terry.ROUNDS) -> list[dict]:
    """projections.model_stats' rows (replies, acceptance, win rate vs people) with the
    arena's strengths; the strongest first, models nobody compared yet after them."""
    from projections.model_stats import model_leaderboard as replies_by_model

    rows = with_strengths(replies_by_model(conn), arena_leaderboard(conn, rounds))
    return sorted(rows, key=lambda r: (r["strength"] is None, -(r["strength"] or 0.0)))
