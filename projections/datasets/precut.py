"""Reading the training projection's tables: builds from pre-cut rows, and its status.

Both read the read-model file without writing it, in one read transaction, so the
position and the rows come from the same commit of the runner. Rows are usable only
when the projection stands exactly at the build's position and its tables were made by
this code (the schemas table holds the digest the runner recorded; a mismatch means the
next runner start re-projects them).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from api.storage.logdb import Location
from projections import log_reader
from projections.datasets.build import Collected
from projections.datasets.live import NAME, TrainingProjection
from projections.datasets.rows import SOURCE, BuildOptions
from projections.store import READMODEL_FILE, schema_digest

_ROWS = (
    "SELECT r.tree_id, t.split_draw, r.count, r.lines FROM dataset_rows r"
    " JOIN dataset_trees t ON t.tree_id = r.tree_id"
    " WHERE r.row_kind = ?1 AND (?2 IS NULL OR t.lang = ?2) ORDER BY r.tree_id"
)


def _open(folder: Path) -> sqlite3.Connection | None:
    path = Path(folder) / READMODEL_FILE
    if not path.exists():
        return None
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)


def _position(conn: sqlite3.Connection) -> tuple[int | None, str]:
    """The projection's position, or None and why its tables cannot be used."""
    try:
        digest = conn.execute("SELECT digest FROM schemas WHERE projection = ?", (NAME,)).fetchone()
        tracked = conn.execute(
            "SELECT position FROM tracking WHERE projection = ?", (NAME,)
        ).fetchone()
    except sqlite3.OperationalError:
        return None, "the read model has no tracking yet"
    if digest is None or tracked is None:
        return None, "the read model has no training projection yet"
    if digest[0] != schema_digest(TrainingProjection()):
        return None, "its tables were made by other code (they are re-projected on the next run)"
    return tracked[0], ""


def collect(
    folder: Path, position: int, options: BuildOptions, row_kinds: tuple[str, ...]
) -> tuple[Collected | None, str]:
    """The rows a build at ``position`` needs, or (None, why not)."""
    if not options.default_rows:
        return None, (
            "only the default --sft-paths best without --include-synthetic,"
            " --sft-model-replies or --sources is pre-cut"
        )
    conn = _open(folder)
    if conn is None:
        return None, f"there is no {READMODEL_FILE}"
    try:
        conn.execute("BEGIN")
        at, why = _position(conn)
        if at != position:
            return None, why or f"it stands at position {at}, not {position}"
        result = Collected(row_kinds)
        result.trees = conn.execute(
            "SELECT count(*) FROM dataset_trees WHERE ?1 IS NULL OR lang = ?1", (options.lang,)
        ).fetchone()[0]
        val = options.val_fraction
        for row_kind in row_kinds:
            for _, draw, count, lines in conn.execute(_ROWS, (row_kind, options.lang)):
                result.add(row_kind, "validation" if draw < val else "train", count, lines)
        return result, ""
    finally:
        conn.close()


def status(
    folder: Path, val_fraction: float = BuildOptions.val_fraction, log: Location | None = None
) -> dict[str, Any]:
    """How far the training projection is behind the log, and what it holds. ``log``: the
    log to measure against (a server's own; default: the folder's configured log)."""
    head = log_reader.log_position(log_reader.events_db(folder) if log is None else log)
    report: dict[str, Any] = {
        "log_position": head,
        "projection_position": None,
        "lag": None,
        "ready_trees": 0,
        "newest_ready_position": None,
        "last_change_position": None,
        "rows": {},
        "note": "",
    }
    conn = _open(folder)
    if conn is None:
        report["note"] = f"there is no {READMODEL_FILE}"
        return report
    try:
        conn.execute("BEGIN")
        at, why = _position(conn)
        report["note"] = why
        if at is None:
            return report
        report.update(projection_position=at, lag=head - at)
        ready, newest, changed = conn.execute(
            "SELECT count(*), max(ready_position), max(changed_position) FROM dataset_trees"
        ).fetchone()
        report.update(ready_trees=ready, newest_ready_position=newest, last_change_position=changed)
        per_row_kind = {
            row_kind: (train, validation)
            for row_kind, train, validation in conn.execute(
                "SELECT r.row_kind, coalesce(sum(CASE WHEN t.split_draw < ?1 THEN 0 ELSE r.count END), 0),"
                " coalesce(sum(CASE WHEN t.split_draw < ?1 THEN r.count ELSE 0 END), 0)"
                " FROM dataset_rows r JOIN dataset_trees t ON t.tree_id = r.tree_id GROUP BY r.row_kind",
                (val_fraction,),
            )
        }
        report["rows"] = {
            dataset_kind: dict(
                zip(("train", "validation"), per_row_kind.get(row_kind, (0, 0)), strict=True)
            )
            for dataset_kind, row_kind in SOURCE.items()
        }
        return report
    finally:
        conn.close()
