"""What a server process does differently when other processes serve the same store
(``dataengine serve --workers N``, or several nodes on one PostgreSQL: $DATAENGINE_SHARED).

- Read models: each process follows the log into read models of its own, in the slot
  folder ``<data>/workers/<n>`` it holds (api.storage.leases.claim_slot). A shared file
  would need one writer and make every other process's read-your-writes wait on it.
- The process loop (expiry, backlog, lottery rounds), the live audit chain and each
  lottery draw run in one process at a time, under leases that move to another process
  when their holder dies (api.storage.leases).
- Rate limits: one sliding-window log for all (api.storage.rate_log).
- Aggregate caches: each process caches aggregates; a command first brings its cached
  copy up to date (eventsourcing's fast-forward), and one that saves on a copy another
  process changed meanwhile conflicts and reruns on a fresh one (domain.service.base).
  Reads answered from the cache without I/O stay current too: the projection runner
  evicts what another process changed as it reads the log (DataEngine.forget_moved), and
  reads that decide access (API keys, web accounts) confirm a cached copy against the
  store once it is over ``confirm_after`` (1 s) old, however far the runner lags.
- Read-your-writes across processes: answers carry the log position they reflect and a
  request may ask to see one (api.http.log_position).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.storage.claim_log import claim_log_for
from api.storage.leases import Announced, LeaseKeeper, claim_slot, lease_for
from api.storage.logdb import Location
from api.storage.rate_log import rate_log_for
from domain.model.errors import ConfigError
from projections.store import READMODEL_FILE

log = logging.getLogger("dataengine.scaleout")
SHARED_ENV = "DATAENGINE_SHARED"


def shared_from_env(environ: dict[str, str] | None = None) -> bool:
    raw = (os.environ if environ is None else environ).get(SHARED_ENV, "").strip().lower()
    if raw not in ("", "1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ConfigError(f"{SHARED_ENV} must be true or false, not {raw!r}")
    return raw in ("1", "true", "yes", "on")


class ScaleOut:
    """The shared-store parts of one server process; ``close`` gives its leases back."""

    def __init__(self, folder: Path, location: Location):
        # A cached aggregate is brought up to date (its newer events read, one indexed
        # query) each time a command loads it: another process may have changed it, and
        # a command deciding on the stale copy could refuse what is allowed (save()
        # conflicts only catch the commands that record). Read by the application when
        # it is opened (eventsourcing merges os.environ into its settings).
        os.environ.setdefault("AGGREGATE_CACHE_FASTFORWARD", "y")
        self.slot, self._slot = claim_slot(folder)
        self.readmodel = self.slot / READMODEL_FILE
        self.rate_log = rate_log_for(folder, location)
        self.claims = claim_log_for(folder, location)  # the hand-out's, of every process
        self.process_lease = Announced(
            lease_for(folder, location, "process-loop"), "the process loop"
        )
        self.lottery_lease = lease_for(folder, location, "lottery")
        self._audit_lease = lease_for(folder, location, "audit")
        self._audit: Any = None
        self._keeper: LeaseKeeper | None = None
        log.info("server process %d: read models in %s", os.getpid(), self.slot)

    def follow_audit(self, start: Callable[[], Any]) -> None:
        """Run the live audit chain (``start()`` opens and starts one) while this process
        holds its lease."""

        def gained() -> None:
            self._audit = start()

        def lost() -> None:
            if self._audit is not None:
                self._audit.close()
                self._audit = None

        self._keeper = LeaseKeeper(self._audit_lease, gained, lost).start()

    @property
    def audit(self) -> Any:
        return self._audit

    def close(self) -> None:
        if self._keeper is not None:
            self._keeper.stop()  # closes the audit follower and releases its lease
            self._keeper = None
        for lease in (self.process_lease, self.lottery_lease):
            lease.release()
        self._slot.release()
