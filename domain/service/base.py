"""The application's plumbing, shared by every group of commands: run, save, locks, reads.

Each command loads, decides, saves. Aggregates stay in an in-process cache, guarded by
striped locks, so a command costs no replay; a version conflict (another process wrote
first) evicts, reloads and retries a bounded number of times. Ids are deterministic,
so a retried request finds its own earlier result and records nothing new.
The only I/O goes through eventsourcing's recorder, chosen by the environment
(SQLite in production, in-memory POPO in unit tests).
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import Application, LRUCache
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Recording

from domain.model.config import TreeConfig
from domain.model.errors import ConcurrencyError, DomainError, ErrorCode
from domain.model.input_rules import check_display_name
from domain.model.user import User, user_id_for
from domain.service.unit_of_work import A, UnitOfWork

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UserDeletedError(DomainError):
    """A deleted (anonymised) user named again: refused as a client error (OA's 503 is
    for a disabled user, which a moderator may enable again; a deletion is final)."""

    error_code = ErrorCode.USER_DISABLED
    http_status = 403


@dataclass
class FirstSight:
    """A user a request names, registered (or its profile updated) only together with the
    request's first successful command: a refused request records nothing, not even the
    user it introduced (``ServiceBase.deferring_user``)."""

    user_id: UUID
    client_id: UUID
    auth_method: str
    username: str
    display_name: str | None
    profile: dict[str, Any] = field(default_factory=dict)
    done: bool = False

    def apply(self, uow: UnitOfWork, now: datetime) -> User:
        if self.display_name is not None:  # given, even empty: it must be a valid name
            check_display_name(self.display_name)
        user = uow.find(User, self.user_id)
        if user is None:
            user = User.register(
                client_id=self.client_id,
                auth_method=self.auth_method,
                username=self.username,
                display_name=self.display_name or self.username,
            )
            uow.add(user)
        elif user.deleted:
            raise UserDeletedError(f"user {self.auth_method}:{self.username} was deleted")
        profile = dict(self.profile)
        if profile.pop("tos_acceptance", False) and user.tos_accepted_at is None:
            profile["tos_accepted_at"] = now
        user.update_profile(display_name=self.display_name, **profile)
        return user


class ServiceBase(Application):
    """What every command group builds on (DataEngine inherits them all)."""

    name = "dataengine"
    env = {
        "MAPPER_TOPIC": "api.storage.codec:MsgspecMapper",
        "AGGREGATE_CACHE_MAXSIZE": "50000",
        # We hold a lock per aggregate and save through this process, so the cached
        # object is current unless another process wrote: then save() conflicts and
        # the command retries on a fresh copy.
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }
    max_attempts = 5
    lock_stripes = 1024
    # Reads that decide access (an API client's key, a web account) trust a cached copy
    # this long at most, then one indexed read of the store confirms it: the bound holds
    # even when the log follower (``forget_moved``, usually far quicker) lags or stopped.
    confirm_after = 1.0

    def __init__(
        self,
        env: dict[str, str] | None = None,
        config: TreeConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        **kwargs: Any,
    ):
        super().__init__(env=env, **kwargs)
        self.config = config or TreeConfig()
        self.clock = clock
        self._locks = [threading.RLock() for _ in range(self.lock_stripes)]
        self._pending = threading.local()  # this thread's request's FirstSight, if any
        self._confirmed: dict[UUID, float] = {}  # aggregate id -> when ``confirmed`` checked it
        self._log_ids: dict[Any, UUID] = {}  # the log's originator ids (text) as UUIDs
        self._moved: set[UUID] = set()  # cached, moved by others, not yet fast-forwarded

    def now(self) -> datetime:
        return self.clock()

    # ------------------------------------------------------------------ locks
    @contextmanager
    def _locked(self, ids: tuple[UUID, ...]) -> Iterator[None]:
        with ExitStack() as stack:
            for lock in self._stripes(ids):
                stack.enter_context(lock)
            yield

    def _stripes(self, ids: tuple[UUID, ...]) -> list[threading.RLock]:
        if len(ids) == 1:
            return [self._locks[ids[0].int % self.lock_stripes]]
        return [self._locks[s] for s in sorted({i.int % self.lock_stripes for i in ids})]

    def _evict(self, aggregate_id: UUID) -> None:
        cache = self.repository.cache
        if cache is not None:
            try:
                cache.get(aggregate_id, evict=True)
            except KeyError:
                pass

    # ------------------------------------------------------------------ writes
    def run(
        self, lock_ids: tuple[UUID, ...], command: Callable[[UnitOfWork], T]
    ) -> tuple[T, int | None]:
        """Run a command under the locks of the aggregates it touches; save what changed.

        Returns the command's result and the log position of the last event saved
        (None when nothing was recorded). Only the command groups call this: callers
        outside domain.service use their methods.
        """
        # a deferred user rides with the first command on that user (one that locks it)
        sight: FirstSight | None = getattr(self._pending, "user", None)
        if sight is not None and (sight.done or sight.user_id not in lock_ids):
            sight = None
        locks = self._stripes(lock_ids)
        for attempt in range(self.max_attempts):
            uow = UnitOfWork(self.repository, attempt)
            for lock in locks:  # always in stripe order, so two commands never deadlock
                lock.acquire()
            try:
                if sight is not None:
                    sight.apply(uow, self.now())
                result = command(uow)
                # what the hook adds is saved first, so the position a command reports
                # stays the last event of the aggregates the command itself changed
                first = self._before_save(uow)
                done = {a.id for a in first}
                changed = first + [
                    a for a in uow.loaded.values() if a.pending_events and a.id not in done
                ]
                position = None
                if changed:
                    recordings = self.save(*changed)
                    position = recordings[-1].notification.id if recordings else None
                if sight is not None:
                    sight.done = True
                return result, position
            except IntegrityError:
                for aggregate_id in uow.loaded:
                    self._evict(aggregate_id)
                continue
            except DomainError:
                for aggregate in uow.loaded.values():
                    if aggregate.pending_events:
                        self._evict(aggregate.id)
                raise
            except BaseException:
                for aggregate_id in uow.loaded:
                    self._evict(aggregate_id)
                raise
            finally:
                for lock in reversed(locks):
                    lock.release()
        raise ConcurrencyError("too many concurrent changes; try again")

    # ------------------------------------------------------------------ first sight
    @contextmanager
    def deferring_user(self) -> Iterator[None]:
        """Within this block (one request, on one thread), ``defer_user`` names a user whose
        registration rides with the first command that succeeds; at the end of a block that
        raised nothing, a user no command took is registered on its own."""
        self._pending.user, self._pending.active = None, True
        try:
            yield
            sight: FirstSight | None = self._pending.user
            if sight is not None and not sight.done:
                self.run((sight.user_id,), lambda uow: None)
        finally:
            self._pending.user, self._pending.active = None, False

    def defer_user(
        self,
        *,
        client_id: UUID,
        auth_method: str,
        username: str,
        display_name: str | None = None,
        **profile: Any,
    ) -> UUID | None:
        """The user's id, its registration deferred (``deferring_user``); None outside a
        deferring block (the caller then registers it at once)."""
        if not getattr(self._pending, "active", False):
            return None
        user_id = user_id_for(client_id, auth_method, username)
        current: FirstSight | None = self._pending.user
        if current is not None and current.user_id != user_id:
            return None  # one deferred user per request; a second one is registered at once
        self._pending.user = FirstSight(
            user_id, client_id, auth_method, username, display_name, dict(profile)
        )
        return user_id

    def _before_save(self, uow: UnitOfWork) -> list[Any]:
        """A hook for what must be saved with any command's changes (the message index):
        the aggregates it added to the unit of work."""
        return []

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording]:
        """Application.save without its per-save overheads, for plain aggregates.

        The stock save tests every object against runtime-checkable Protocols (slow:
        typing walks the protocol's attributes each time), calls the deprecated
        notify() and looks for snapshots to take. Commands save only aggregates, we
        take no snapshots by default, so this path records the events, puts the
        aggregates in the cache and calls the _notify hook, as the stock path does.
        Anything else (events, tracking, snapshot intervals) takes the stock path.
        """
        if kwargs or self.snapshotting_intervals or not all(isinstance(o, Aggregate) for o in objs):
            return super().save(*objs, **kwargs)
        events: list[Any] = []
        for obj in objs:
            events += obj.collect_events()
        recordings = self.events.put(events)
        repository = self.repository
        if repository.cache is not None:
            for obj in objs:
                # an index entry never changes: cached even where loads fast-forward
                if not repository.fastforward or getattr(obj, "written_once", False):
                    repository.cache.put(obj.id, obj)
        self._notify(recordings)
        return recordings

    def close(self) -> None:
        close = getattr(self.recorder, "close", None)  # a recorder with its own connection
        if callable(close):
            close()
        super().close()

    # ------------------------------------------------------------------ reads
    def _read(self, cls: type[A], aggregate_id: UUID) -> A:
        """A private copy of the aggregate as it is now."""
        with self._locked((aggregate_id,)):
            return copy.deepcopy(UnitOfWork(self.repository).get(cls, aggregate_id))

    def _peek(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate as cached (loaded if need be), to read and never to change; None
        when there is none. No copy: for fields that never change once recorded, or for a
        read that tolerates a concurrent command."""
        self._moved.discard(aggregate_id)  # before the load, so a later mark stays
        return UnitOfWork(self.repository).find(cls, aggregate_id)

    def _cached(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """``_peek`` without I/O: the aggregate if it is in the cache, else None."""
        cache = self.repository.cache
        if cache is None or aggregate_id in self._moved:
            return None
        try:
            found = cache.get(aggregate_id)
        except KeyError:
            return None
        return found if isinstance(found, cls) else None

    def confirmed(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """``_peek`` for a read that decides access: a cached copy last confirmed over
        ``confirm_after`` seconds ago is first checked against the store (newer events
        there: reloaded), so another process's change is seen here within that bound."""
        now = time.monotonic()
        if now - self._confirmed.get(aggregate_id, -math.inf) < self.confirm_after:
            return self._peek(cls, aggregate_id)
        cached = self._cached(cls, aggregate_id)
        if cached is not None and self.recorder.select_events(
            aggregate_id, gt=cached.version, limit=1
        ):
            self._evict(aggregate_id)
        found = self._peek(cls, aggregate_id)
        if found is not None:  # only what exists: unknown ids (guessed keys) take no room
            self._confirmed[aggregate_id] = now
        return found

    def confirmed_cached(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """``confirmed`` without I/O: None when the aggregate is not cached or is due to be
        confirmed (the caller then calls ``confirmed`` off its event loop)."""
        if time.monotonic() - self._confirmed.get(aggregate_id, -math.inf) >= self.confirm_after:
            return None
        return self._cached(cls, aggregate_id)

    # ------------------------------------------------------------------ other writers
    def forget_moved(self, rows: Iterable[tuple[Any, ...]] | None) -> None:
        """Evict each cached aggregate another writer (process, node, CLI) moved past
        (where loads fast-forward: mark it, ``_moved_past``).

        ``rows`` are new log entries ``(position, originator_id, originator_version, ...)``
        as the projection runner reads them, before it applies them (so a request that
        waits for a log position finds the aggregates it changed reloaded); None: entries
        went by unseen (another runner applied them), so the whole cache is dropped. This
        process's own writes leave the cached copy at or past the logged version: nothing
        is evicted, a dict look-up per event. A command that holds an evicted copy still
        saves safely: its save conflicts and it reruns on a fresh one.

        Not closed: a read that loads an aggregate just before another writer's change and
        caches it just after the runner passed that change (a window of microseconds)
        keeps the older copy until the aggregate changes again. Reads that decide access
        are bounded by ``confirmed`` regardless; commands that record conflict and rerun.
        """
        cache = self.repository.cache
        if cache is None or not cache.cache:
            return
        entries = cache.cache
        if rows is None:
            for key in list(entries):
                self._evict(key)
            return
        lru, ids = isinstance(cache, LRUCache), self._log_ids
        for row in rows:
            key = ids.get(row[1])
            if key is None:  # parsing an id's text costs ~1 us, more than the rest together
                key = row[1] if isinstance(row[1], UUID) else UUID(row[1])
                if len(ids) >= 20_000:  # a memo, not a record: ~5 MB at most
                    ids.clear()
                ids[row[1]] = key
            entry = entries.get(key)  # no lock, no LRU reordering: the runner only looks
            if entry is None:
                continue
            cached = entry[LRUCache.RESULT] if lru else entry  # None: a link being recycled
            if cached is not None and cached.version < row[2]:
                self._moved_past(key)

    def _moved_past(self, key: UUID) -> None:
        """Where loads fast-forward the cache (several processes), a moved aggregate stays
        cached: its next load reads only the newer events, where an eviction would rebuild
        it from all of them (measured with two processes: 175 -> 195 cycles/s on SQLite,
        75 -> 86 on PostgreSQL, bench/throughput.py). Only reads without I/O (``_cached``)
        must not answer from it: the mark sends them to a loading read first."""
        if not self.repository.fastforward:
            self._evict(key)
            return
        if len(self._moved) >= 50_000:  # a bound, not a record: start over from the store
            for cached in list(self.repository.cache.cache if self.repository.cache else ()):
                self._evict(cached)
            self._moved.clear()
        self._moved.add(key)
