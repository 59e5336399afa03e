"""The read-model database: one SQLite file beside the event store, plus its tracking.

The tracking table holds, per projection, the log position its rows reflect. Rows and
position change in the same transaction, so after any crash the file is exactly the
projection of a prefix of the log, and following resumes right after that prefix.
The file can be deleted at any time: it is rebuilt from the log.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from projections import identity
from projections.base import Projection

READMODEL_FILE = "readmodel.sqlite"


def default_projections() -> list[Projection]:
    # Messages before trees: tree sizes are counted from the message rows. The statistics
    # come after all three: they read the messages, rankings, trees and tasks rows
    # as already updated for the event they handle.
    from projections.agreement import AgreementProjection
    from projections.arena import ArenaProjection
    from projections.datasets.live import TrainingProjection
    from projections.messages import MessagesProjection
    from projections.model_stats import ModelStatsProjection
    from projections.models import ModelsProjection
    from projections.moderation import ModerationProjection
    from projections.stats import StatsProjection
    from projections.trees import TreesProjection
    from projections.users import UsersProjection

    return [
        MessagesProjection(),
        TreesProjection(),
        UsersProjection(),
        StatsProjection(),
        ModelStatsProjection(),
        ArenaProjection(),
        AgreementProjection(),
        ModelsProjection(),
        ModerationProjection(),
        TrainingProjection(),
    ]


def schema_digest(projection: Projection) -> str:
    """What the projection's tables are: its DDL, and ``schema_version`` if it has one (for
    a change of meaning that leaves the DDL as it was)."""
    text = "\n".join(projection.ddl) + f"\n{projection.schema_version}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ReadModel:
    def __init__(self, path: str | Path, projections: Sequence[Projection] | None = None):
        self.path = Path(path)
        self.projections = list(projections) if projections is not None else default_projections()
        self._local = threading.local()

    def connect(self, *, bulk: bool = False) -> sqlite3.Connection:
        """A new connection (autocommit; callers BEGIN explicitly when they write).

        ``bulk`` is for a rebuild into a scratch file nobody else reads: no fsync, the
        rollback journal in memory, one lock for the whole run and a large page cache.
        A crash loses the scratch file, never the live one (projections.rebuild).
        """
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        if bulk:
            for pragma in (
                "journal_mode=MEMORY",
                "synchronous=OFF",
                "locking_mode=EXCLUSIVE",
                "cache_size=-262144",
                "temp_store=MEMORY",
            ):
                conn.execute(f"PRAGMA {pragma}")
            return conn
        conn.execute("PRAGMA journal_mode=WAL")
        # The file is rebuildable, and WAL with synchronous=NORMAL stays consistent after
        # a crash (a lost tail is re-projected since its tracking is lost with it).
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def reader(self) -> sqlite3.Connection:
        """This thread's reading connection (created on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
        return conn

    def create(self, conn: sqlite3.Connection) -> None:
        """Create what is missing. A projection whose tables were made by another version of
        its DDL (or before the file recorded versions) loses them and its position, so it
        projects the log again from the start while the others carry on."""
        conn.execute("BEGIN")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS tracking ("
            "projection TEXT PRIMARY KEY, position INTEGER NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schemas (projection TEXT PRIMARY KEY, digest TEXT NOT NULL)"
        )
        conn.execute(identity.DDL)  # which log this file projects (projections.identity)
        known = dict(conn.execute("SELECT projection, digest FROM schemas"))
        tracked = {name for (name,) in conn.execute("SELECT projection FROM tracking")}
        for projection in self.projections:
            digest = schema_digest(projection)
            if known.get(projection.name) != digest and (
                projection.name in known or projection.name in tracked
            ):
                for table in projection.tables:
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
                conn.execute("DELETE FROM tracking WHERE projection = ?", (projection.name,))
            for statement in projection.ddl:
                conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO tracking VALUES (?, 0)", (projection.name,))
            conn.execute("INSERT OR REPLACE INTO schemas VALUES (?, ?)", (projection.name, digest))
        conn.execute("COMMIT")

    def drop(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")
        for projection in self.projections:
            for table in projection.tables:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute("DELETE FROM tracking WHERE projection = ?", (projection.name,))
        conn.execute("DROP TABLE IF EXISTS schemas")  # nothing left to describe
        conn.execute("DROP TABLE IF EXISTS log_identity")  # nothing projected any more
        conn.execute("COMMIT")

    def positions(self, conn: sqlite3.Connection | None = None) -> dict[str, int]:
        conn = conn or self.reader()
        try:
            return dict(
                conn.execute("SELECT projection, position FROM tracking ORDER BY projection")
            )
        except sqlite3.OperationalError:
            return {}

    def tables(self) -> list[str]:
        return [t for p in self.projections for t in p.tables]
