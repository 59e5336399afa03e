"""How far annotators agree: rankers with the consensus, reviewers with each other.

Rankers: when a parent is scored, each individual ranking of its replies gets Kendall's
tau-a (domain.consensus.kendall_tau) against the consensus order, over the replies both
contain; a user's agreement is the mean over their rankings. Scoring again replaces the
parent's rows. The projection keeps its own copy of the rankings and reads only its own
tables.

Reviewers: Krippendorff's alpha per label over task-based reviews (free labels and
reports are not reviews). A unit is one (message, label); only units with at least two
values are pairable. Every label uses the interval metric, delta(a, b) = (a - b)^2: yes/no
and flag labels are 0/1 values, for which (a - b)^2 is exactly the nominal metric's
mismatch indicator, so their alpha is the nominal alpha; likert labels (0, .25, ... 1) are
interval data. With the interval metric a unit is summarised by (m, sum v, sum v^2):

    D_o = (1/n) * sum_u sum_{i != j in u} (v_i - v_j)^2 / (m_u - 1)
    D_e = 1 / (n (n - 1)) * sum_{i != j over all pairable values} (v_i - v_j)^2
    sum_{i != j} (v_i - v_j)^2 = 2 (m * sum v^2 - (sum v)^2)

so alpha = 1 - D_o / D_e = 1 - (n - 1) * W / (n * T2 - T1^2), with n, T1, T2 the count,
sum and sum of squares of all pairable values and W = sum_u (m_u S2_u - S1_u^2) / (m_u - 1).
Each review only adds to its unit's three numbers, and alpha is one SQL aggregate.
Values are kept as integers in units of 1/SCALE (alpha does not change when all values
are scaled), so the sums are exact and independent of how the log was batched.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Iterable, Sequence
from uuid import UUID

from domain.consensus import kendall_tau
from domain.labels import LABELS, TextLabel
from domain.tree import ConversationTree as T
from projections.base import Projection, dumps, handles, uid

SCALE = 10_000  # label values are compared at a resolution of 1e-4 (likert steps are exact)


class AgreementProjection(Projection):
    name = "agreement"
    views = True  # handlers take ids as text, so they accept log views and domain events
    tables = ("agreement_rankings", "ranking_agreement", "label_units")
    ddl = (
        """CREATE TABLE IF NOT EXISTS agreement_rankings (
            parent_id TEXT NOT NULL, user_id TEXT NOT NULL, ranked TEXT NOT NULL,
            PRIMARY KEY (parent_id, user_id)) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS ranking_agreement (
            parent_id TEXT NOT NULL, user_id TEXT NOT NULL, tau REAL NOT NULL,
            items INTEGER NOT NULL, PRIMARY KEY (parent_id, user_id)) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS label_units (
            message_id TEXT NOT NULL, label TEXT NOT NULL, n INTEGER NOT NULL,
            s1 INTEGER NOT NULL, s2 INTEGER NOT NULL,
            PRIMARY KEY (message_id, label)) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS ranking_agreement_user ON ranking_agreement (user_id)",
    )

    def __init__(self) -> None:
        self._units: dict[tuple[str, str], list[int]] = {}
        self._rankings: dict[str, dict[str, str]] = {}  # parent -> user -> ranked ids
        self._taus: dict[str, list[tuple[str, str, float, int]]] = {}  # parent -> rows

    # Reviews and rankings of a batch are kept in dicts and written at its end.
    def begin_batch(self, c: sqlite3.Cursor) -> None:
        self._units, self._rankings, self._taus = {}, {}, {}

    def abort_batch(self) -> None:
        self._units, self._rankings, self._taus = {}, {}, {}

    def end_batch(self, c: sqlite3.Cursor) -> None:
        c.executemany(
            "INSERT INTO label_units VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id, label)"
            " DO UPDATE SET n = n + excluded.n, s1 = s1 + excluded.s1, s2 = s2 + excluded.s2",
            [(*key, *sums) for key, sums in self._units.items()])
        c.executemany("INSERT OR REPLACE INTO agreement_rankings VALUES (?, ?, ?)",
                      [(parent, user, ranked) for parent, users in self._rankings.items()
                       for user, ranked in users.items()])
        c.executemany("DELETE FROM ranking_agreement WHERE parent_id = ?",
                      [(parent,) for parent in self._taus])
        c.executemany("INSERT INTO ranking_agreement VALUES (?, ?, ?, ?)",
                      [row for rows in self._taus.values() for row in rows])
        self._units, self._rankings, self._taus = {}, {}, {}

    @handles(T.LabelsSubmitted)
    def on_labels(self, c: sqlite3.Cursor, e: Any) -> None:
        if e.kind != "task":
            return
        # The domain takes one task review per user and message, so each adds one value.
        message_id, units = uid(e.message_id), self._units
        for label, value in e.labels.items():
            q = round(value * SCALE)
            sums = units.get((message_id, label))
            if sums is None:
                units[message_id, label] = [1, q, q * q]
            else:
                sums[0] += 1
                sums[1] += q
                sums[2] += q * q

    @handles(T.RankingSubmitted)
    def on_ranking(self, c: sqlite3.Cursor, e: Any) -> None:
        if e.user_id is not None:  # one ranking per user and parent (the domain's rule)
            self._rankings.setdefault(uid(e.parent_id), {})[uid(e.user_id)] = dumps(
                [uid(i) for i in e.ranked_message_ids])

    @handles(T.TreeScored, T.RanksImported)
    def on_scored(self, c: sqlite3.Cursor, e: Any) -> None:
        for parent_id, order in e.ranks.items():
            parent = uid(UUID(parent_id))
            consensus = [uid(i) for i in order]
            rankings = dict(c.execute(
                "SELECT user_id, ranked FROM agreement_rankings WHERE parent_id = ?", (parent,)))
            rankings.update(self._rankings.get(parent, {}))
            rows = []
            for user_id, ranked in sorted(rankings.items()):
                ids = json.loads(ranked)
                items = len(set(ids) & set(consensus))
                if items >= 2:
                    rows.append((parent, user_id, kendall_tau(ids, consensus), items))
            self._taus[parent] = rows  # replaces the parent's rows at the end of the batch


# ---------------------------------------------------------------- Krippendorff's alpha
def unit_summary(values: Sequence[float]) -> tuple[int, float, float]:
    """(m, sum v, sum v^2) of one unit's values."""
    return len(values), float(sum(values)), float(sum(v * v for v in values))


def alpha_from_totals(n: int, t1: float, t2: float, within: float) -> float | None:
    """Interval alpha from the pooled totals (see the module doc); None when undefined:
    fewer than two pairable values, or no variation at all (D_e = 0)."""
    spread = n * t2 - t1 * t1
    if n < 2 or spread <= 1e-12 * max(1.0, n * t2):
        return None
    return 1.0 - (n - 1) * within / spread


def interval_alpha(units: Iterable[Sequence[float]]) -> float | None:
    """Krippendorff's alpha (interval metric) over units given as lists of values."""
    n, t1, t2, within = 0, 0.0, 0.0, 0.0
    for values in units:
        m, s1, s2 = unit_summary(values)
        if m < 2:
            continue  # a unit with one value has no pair: not pairable
        n, t1, t2 = n + m, t1 + s1, t2 + s2
        within += (m * s2 - s1 * s1) / (m - 1)
    return alpha_from_totals(n, t1, t2, within)


def _widget(label: str) -> str | None:
    try:
        return LABELS[TextLabel(label)].widget.value
    except ValueError:
        return None


def label_agreement(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Per label: pairable units (messages with >= 2 reviews giving it), values, alpha."""
    out = []
    for label, units, n, t1, t2, within in conn.execute(
            "SELECT label, count(*), sum(n), sum(s1), sum(s2),"
            " sum((n * s2 - s1 * s1) * 1.0 / (n - 1))"
            " FROM label_units WHERE n >= 2 GROUP BY label ORDER BY label"):
        out.append({"label": label, "widget": _widget(label), "metric": "interval",
                    "units": units, "values": n, "alpha": alpha_from_totals(n, t1, t2, within)})
    return out


def ranker_agreement(conn: sqlite3.Connection, *, min_rankings: int = 1) -> list[dict[str, Any]]:
    """Per user: rankings compared with a consensus and their mean Kendall tau; the most
    agreeing first."""
    rows = conn.execute(
        "SELECT a.user_id, u.username, u.display_name, count(*), avg(a.tau), min(a.tau),"
        " max(a.tau) FROM ranking_agreement a LEFT JOIN users u ON u.user_id = a.user_id"
        " GROUP BY a.user_id HAVING count(*) >= ? ORDER BY avg(a.tau) DESC, a.user_id",
        (min_rankings,)).fetchall()
    return [{"user_id": u, "username": name, "display_name": display, "rankings": count,
             "mean_tau": mean, "min_tau": low, "max_tau": high}
            for u, name, display, count, mean, low, high in rows]


def agreement(conn: sqlite3.Connection, *, min_rankings: int = 1) -> dict[str, Any]:
    """GET /stats/agreement: rankers against the consensus, reviewers per label."""
    count, mean = conn.execute("SELECT count(*), avg(tau) FROM ranking_agreement").fetchone()
    return {"rankings_compared": count, "mean_tau": mean,
            "rankers": ranker_agreement(conn, min_rankings=min_rankings),
            "labels": label_agreement(conn)}
