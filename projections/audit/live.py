"""The live audit chain: a follower thread that extends ``audit.sqlite`` as events commit.

Without it fingerprints were recorded only when someone ran ``audit digest``, so a row
changed before the first digest, or after the last, was blessed by the next one. The
follower polls the log's head (one indexed ``max(rowid)``, cheap) every ``interval``
seconds and, when it moved, extends the record (``record.record``: only new events are
hashed, a checkpoint at the end of every batch). So every acknowledged event is covered
within about ``interval`` plus one batch's hashing, and ``audit verify`` has checkpoints
to hold the log to without any manual digest. With a signing key in the data folder
(``audit keygen``) the checkpoint at the end of each batch is also signed (ed25519).

A changed log under the record (ChainBroken) stops the follower: extending the chain
over a rewrite would bless it. The reason is kept (``error``) for /health and the log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

from projections.audit.chain import canonical, fingerprint
from projections.audit.record import (
    AUDIT_FILE,
    AuditStore,
    ChainBroken,
    log_row,
    open_log,
    record,
)
from projections.audit.signing import Signatures, load_signer
from projections.identity import set_aside
from projections.log import max_position

log = logging.getLogger("dataengine.audit")


class AuditFollower:
    def __init__(self, folder: Path, location: Any, *, interval: float = 0.1):
        self.folder = Path(folder)
        self.location = location  # the log: an events.sqlite path or a PostgreSQL URL
        self.interval = interval
        self.position = 0
        self.error: str | None = None
        self.signed = 0
        self.closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log: Any = None
        self._store: AuditStore | None = None
        self._signer = load_signer(self.folder)
        self._signatures: Signatures | None = None

    def _open(self) -> bool:
        if self._log is None:
            self._log = open_log(self.location)
        if self._store is None:
            self._set_aside_if_foreign()
            self._store = AuditStore(self.folder / AUDIT_FILE)
            self.position = self._store.head()[0]
            if self._signer is not None:
                self._signatures = Signatures(self._store.conn)
        return self._log is not None

    def _set_aside_if_foreign(self) -> None:
        """A corrupt audit.sqlite, or one recording another store's log (its first event
        is not ours), is set aside and recorded afresh. One whose later events differ
        from the log is kept: that is the tampering it exists to show (ChainBroken)."""
        path = self.folder / AUDIT_FILE
        if not path.exists() or self._log is None:
            return
        reason = None
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                found = conn.execute("PRAGMA quick_check").fetchone()[0]
                if found != "ok":
                    reason = f"it is corrupt (quick_check: {found})"
                else:
                    first = conn.execute(
                        "SELECT position, fingerprint FROM events ORDER BY position LIMIT 1"
                    ).fetchone()
                    row = log_row(self._log, first[0]) if first else None
                    if first and row is not None and fingerprint(canonical(*row)) != first[1]:
                        reason = f"its first event (position {first[0]}) is another store's"
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            reason = f"it cannot be read ({e})"
        if reason is not None:
            set_aside(path, reason)

    def step(self) -> int:
        """Extend the record to the log's head; the number of events added."""
        if not self._open():
            return 0  # no log yet
        assert self._store is not None
        if max_position(self._log) == self.position:
            return 0
        position, digest, added, holes = record(self._log, self._store)
        for a, b in holes:
            log.warning("audit: positions %d..%d are absent from the log", a, b)
        if added and self._signatures is not None and self._signer is not None:
            self._signatures.sign(self._signer, position, digest)
            self.signed += 1
        self.position = position
        return added

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except ChainBroken as e:
                self.error = str(e)
                log.error("audit chain stopped: %s", e)
                return
            except sqlite3.OperationalError as e:  # busy or full: try again next round
                log.warning("audit: %s; retrying", e)
            self._stop.wait(self.interval)

    def start(self) -> AuditFollower:
        self._thread = threading.Thread(target=self.run, name="audit-follower", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop after a last step, so everything committed before the close is covered."""
        self.closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.error is None:
            try:
                self.step()
            except (ChainBroken, sqlite3.Error) as e:
                log.error("audit: the last step failed: %s", e)
        if self._store is not None:
            self._store.close()
            self._store = None
        close = getattr(self._log, "close", None)
        if callable(close):
            close()
        self._log = None
