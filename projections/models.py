"""The models registry as a table, joined with how each model's replies fare with people.

One row per registered model (``domain.model.trained_model``), with the log position of its
registration (the runner's ``positions`` hook hands it to the view). ``registry`` lists
them with the model statistics read model (projections.model_stats) keyed by the same
name, since pre-labelling records the registry name as the replies' ``model_name``.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

import msgspec

from domain.model.trained_model import TrainedModel
from projections.base import Projection, dumps, handles, ts
from projections.model_stats import model_leaderboard


class _Registered(msgspec.Struct, kw_only=True):
    """TrainedModel.Registered as decoded from the log, ids as text, plus its position."""

    originator_id: str = ""
    originator_version: int = 0
    timestamp: datetime
    name: str
    path: str
    kind: str
    base_model: str | None
    dataset_position: int | None
    dataset_digest: str | None
    metrics: dict[str, float]
    user_id: str | None
    client_id: str | None
    position: int = 0


class ModelsProjection(Projection):
    name = "models"
    views = {TrainedModel.Registered: _Registered}
    positions = True
    tables = ("models",)
    ddl = (
        """CREATE TABLE IF NOT EXISTS models (
            name TEXT PRIMARY KEY, model_id TEXT NOT NULL, path TEXT NOT NULL,
            kind TEXT NOT NULL, base_model TEXT, dataset_position INTEGER,
            dataset_digest TEXT, metrics TEXT NOT NULL, registered_at REAL NOT NULL,
            position INTEGER NOT NULL, user_id TEXT, client_id TEXT)""",
    )

    @handles(TrainedModel.Registered)
    def on_registered(self, c: sqlite3.Cursor, e: _Registered) -> None:
        c.execute(
            "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                e.name,
                e.originator_id,
                e.path,
                e.kind,
                e.base_model,
                e.dataset_position,
                e.dataset_digest,
                dumps(e.metrics),
                ts(e.timestamp),
                e.position,
                e.user_id,
                e.client_id,
            ),
        )


_STATS = (
    "replies",
    "accepted",
    "acceptance_rate",
    "ranked",
    "mean_rank",
    "human_pairs",
    "wins",
    "win_rate",
)


def registry(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every registered model in log order, with its human statistics (None where the
    model has no replies yet)."""
    rows = conn.execute(
        "SELECT name, model_id, path, kind, base_model, dataset_position, dataset_digest,"
        " metrics, registered_at, position FROM models ORDER BY position"
    ).fetchall()
    stats = {r["model_name"]: r for r in model_leaderboard(conn)}
    out = []
    for (
        name,
        model_id,
        path,
        model_kind,
        base,
        position,
        digest,
        metrics,
        registered_at,
        log_position,
    ) in rows:
        s = stats.get(name, {})
        out.append(
            {
                "name": name,
                "model_id": model_id,
                "path": path,
                "kind": model_kind,
                "base_model": base,
                "dataset_position": position,
                "dataset_digest": digest,
                "metrics": json.loads(metrics),
                "registered_at": registered_at,
                "log_position": log_position,
                **{k: s.get(k) for k in _STATS},
            }
        )
    return out
