"""How far annotators agree: rankers with the consensus, reviewers with each other.

Rankers: when a parent is scored, each individual ranking of its replies gets Kendall's
tau-a (domain.model.consensus.kendall_tau) against the consensus order, over the replies both
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
Each review only adds to its unit's three numbers. ``label_units`` keeps them per message
(one row, all its labels); ``label_totals`` keeps, per label and unit size m >= 2, the
number of units and the sums of S1, S2 and m S2 - S1^2 over them, so alpha is one small
aggregate (W = sum over m of those last sums / (m - 1)) and a review moves its unit from
one size to the next. Values are kept as integers in units of 1/SCALE (alpha does not
change when all values are scaled), so the sums are exact and independent of how the log
was batched.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import msgspec

from domain.model.consensus import kendall_tau
from domain.model.labels import LABELS, LabelKind, TextLabel
from domain.model.tree import ConversationTree
from projections.base import Projection, handles, uid
from projections.user_merge import AgreementMerge

SCALE = 10_000  # label values are compared at a resolution of 1e-4 (likert steps are exact)
_CACHE_LIMIT = 200_000
_encode = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.Decoder(dict[str, list[int]]).decode
_decode_ids = msgspec.json.Decoder(list[str]).decode


class AgreementProjection(AgreementMerge, Projection):
    name = "agreement"
    replay_indexes = ()  # handlers look rows up by key (prefix) only
    replay_cost = 1.5
    views = True  # handlers take ids as text, so they accept log views and domain events
    tables = ("agreement_rankings", "ranking_agreement", "label_units", "label_totals")
    ddl = (
        """CREATE TABLE IF NOT EXISTS agreement_rankings (
            parent_id TEXT NOT NULL, user_id TEXT NOT NULL, ranked TEXT NOT NULL,
            PRIMARY KEY (parent_id, user_id)) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS ranking_agreement (
            parent_id TEXT NOT NULL, user_id TEXT NOT NULL, tau REAL NOT NULL,
            items INTEGER NOT NULL, PRIMARY KEY (parent_id, user_id)) WITHOUT ROWID""",
        # units: {label: [m, S1, S2]} of the message's task reviews
        """CREATE TABLE IF NOT EXISTS label_units (
            message_id TEXT PRIMARY KEY, units TEXT NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS label_totals (
            label TEXT NOT NULL, m INTEGER NOT NULL, units INTEGER NOT NULL,
            s1 INTEGER NOT NULL, s2 INTEGER NOT NULL, spread INTEGER NOT NULL,
            PRIMARY KEY (label, m)) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS ranking_agreement_user ON ranking_agreement (user_id)",
    )

    def __init__(self) -> None:
        # Reviews and rankings of a batch are kept in dicts and written at its end.
        self._reviews: dict[str, list[dict[str, float]]] = {}  # message -> task labels
        self._rankings: dict[str, dict[str, str]] = {}  # parent -> user -> ranked ids
        self._taus: dict[str, list[tuple[str, str, float, int]]] = {}  # parent -> rows
        # label_units rows (JSON) as the table holds them: messages are reviewed over
        # several batches. Dropped with another connection, a rollback, or when it grows
        # large; ``_complete``: it holds every row (a table that was empty when it began),
        # so a message it lacks has no row and needs no lookup (a replay from scratch).
        self._units: dict[str, bytes] = {}
        self._complete = False
        self._conn: sqlite3.Connection | None = None

    def begin_batch(self, c: sqlite3.Cursor) -> None:
        if self._conn is not c.connection:
            self._units, self._conn = {}, c.connection
            self._complete = c.execute("SELECT 1 FROM label_units LIMIT 1").fetchone() is None
        elif len(self._units) > _CACHE_LIMIT:
            self._units, self._complete = {}, False
        self._reviews, self._rankings, self._taus = {}, {}, {}

    def abort_batch(self) -> None:
        self._reviews, self._rankings, self._taus = {}, {}, {}
        self._units, self._conn, self._complete = {}, None, False

    def end_batch(self, c: sqlite3.Cursor) -> None:
        self._write_units(c)
        c.executemany(
            "INSERT OR REPLACE INTO agreement_rankings VALUES (?, ?, ?)",
            [
                (parent, user, ranked)
                for parent, users in self._rankings.items()
                for user, ranked in users.items()
            ],
        )
        c.executemany(
            "DELETE FROM ranking_agreement WHERE parent_id = ?",
            [(parent,) for parent in self._taus],
        )
        c.executemany(
            "INSERT INTO ranking_agreement VALUES (?, ?, ?, ?)",
            [row for rows in self._taus.values() for row in rows],
        )
        self._reviews, self._rankings, self._taus = {}, {}, {}

    def _write_units(self, c: sqlite3.Cursor) -> None:
        """Add the batch's reviews to their units and move each unit's share of the totals
        from its old size to its new one."""
        if not self._reviews:
            return
        cache = self._units
        totals: dict[tuple[str, int], list[int]] = {}
        rows = []
        for message_id in sorted(self._reviews):
            stored = cache.get(message_id)
            if stored is None and not self._complete:
                found = c.execute(
                    "SELECT units FROM label_units WHERE message_id = ?", (message_id,)
                ).fetchone()
                stored = found[0].encode() if found else None
            units = _decode(stored) if stored else {}
            added: dict[str, list[int]] = {}
            for labels in self._reviews[message_id]:
                for label, value in labels.items():
                    q = round(value * SCALE)
                    sums = added.get(label)
                    if sums is None:
                        added[label] = [1, q, q * q]
                    else:
                        sums[0] += 1
                        sums[1] += q
                        sums[2] += q * q
            for label, (dm, d1, d2) in added.items():
                m, s1, s2 = units.get(label) or (0, 0, 0)
                if m >= 2:
                    t = totals.setdefault((label, m), [0, 0, 0, 0])
                    t[0] -= 1
                    t[1] -= s1
                    t[2] -= s2
                    t[3] -= m * s2 - s1 * s1
                m, s1, s2 = m + dm, s1 + d1, s2 + d2
                units[label] = [m, s1, s2]
                if m >= 2:
                    t = totals.setdefault((label, m), [0, 0, 0, 0])
                    t[0] += 1
                    t[1] += s1
                    t[2] += s2
                    t[3] += m * s2 - s1 * s1
            stored = cache[message_id] = _encode(units)
            rows.append((message_id, stored.decode()))
        c.executemany("INSERT OR REPLACE INTO label_units VALUES (?, ?)", rows)
        c.executemany(
            "INSERT INTO label_totals VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (label, m) DO UPDATE"
            " SET units = units + excluded.units, s1 = s1 + excluded.s1,"
            " s2 = s2 + excluded.s2, spread = spread + excluded.spread",
            [(*key, *t) for key, t in sorted(totals.items()) if any(t)],
        )
        # A size no unit has any more leaves no row (a rebuild in one batch never made it).
        c.executemany(
            "DELETE FROM label_totals WHERE label = ? AND m = ? AND units = 0",
            [key for key, t in sorted(totals.items()) if t[0] < 0],
        )

    @handles(ConversationTree.LabelsSubmitted)
    def on_labels(self, c: sqlite3.Cursor, e: Any) -> None:
        # The domain takes one task review per user and message, so each adds one value
        # to each of its labels' units; free labels and reports are not reviews.
        if e.kind == LabelKind.TASK:
            message_id = uid(e.message_id)
            reviews = self._reviews.get(message_id)
            if reviews is None:
                self._reviews[message_id] = [e.labels]
            else:
                reviews.append(e.labels)

    @handles(ConversationTree.RankingSubmitted)
    def on_ranking(self, c: sqlite3.Cursor, e: Any) -> None:
        if e.user_id is not None:  # one ranking per user and parent (the domain's rule)
            self._rankings.setdefault(uid(e.parent_id), {})[uid(e.user_id)] = _encode(
                [uid(i) for i in e.ranked_message_ids]
            ).decode()

    @handles(ConversationTree.TreeScored, ConversationTree.RanksImported)
    def on_scored(self, c: sqlite3.Cursor, e: Any) -> None:
        for parent_id, order in e.ranks.items():
            parent = uid(UUID(parent_id))
            consensus = [uid(i) for i in order]
            rankings = dict(
                c.execute(
                    "SELECT user_id, ranked FROM agreement_rankings WHERE parent_id = ?", (parent,)
                )
            )
            rankings.update(self._rankings.get(parent, {}))
            rows = []
            for user_id, ranked in sorted(rankings.items()):
                ids = _decode_ids(ranked)
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
        "SELECT label, sum(units), sum(m * units), sum(s1), sum(s2),"
        " sum(spread * 1.0 / (m - 1))"
        " FROM label_totals WHERE m >= 2 GROUP BY label HAVING sum(units) > 0"
        " ORDER BY label"
    ):
        out.append(
            {
                "label": label,
                "widget": _widget(label),
                "metric": "interval",
                "units": units,
                "values": n,
                "alpha": alpha_from_totals(n, t1, t2, within),
            }
        )
    return out


def ranker_agreement(conn: sqlite3.Connection, *, min_rankings: int = 1) -> list[dict[str, Any]]:
    """Per user: rankings compared with a consensus and their mean Kendall tau; the most
    agreeing first."""
    rows = conn.execute(
        "SELECT a.user_id, u.username, u.display_name, count(*), avg(a.tau), min(a.tau),"
        " max(a.tau) FROM ranking_agreement a LEFT JOIN users u ON u.user_id = a.user_id"
        " GROUP BY a.user_id HAVING count(*) >= ? ORDER BY avg(a.tau) DESC, a.user_id",
        (min_rankings,),
    ).fetchall()
    return [
        {
            "user_id": u,
            "username": name,
            "display_name": display,
            "rankings": count,
            "mean_tau": mean,
            "min_tau": low,
            "max_tau": high,
        }
        for u, name, display, count, mean, low, high in rows
    ]


def agreement(conn: sqlite3.Connection, *, min_rankings: int = 1) -> dict[str, Any]:
    """GET /stats/agreement: rankers against the consensus, reviewers per label."""
    count, mean = conn.execute("SELECT count(*), avg(tau) FROM ranking_agreement").fetchone()
    return {
        "rankings_compared": count,
        "mean_tau": mean,
        "rankers": ranker_agreement(conn, min_rankings=min_rankings),
        "labels": label_agreement(conn),
    }
