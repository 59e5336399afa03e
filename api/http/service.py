"""What the HTTP handlers share: the application, the projection runner, the hand-out,
the threadpool for commands and the aiosqlite pools for reads.

Opened by the app's lifespan (``start``) and closed with it (``stop``). Command handlers
run in the threadpool and call the synchronous DataEngine directly, reading the read
model through one SQLite connection per thread; read handlers run on the event loop and
query through aiosqlite (api.storage.reads). After a command, ``catch_up(position)``
(``catch_up_async`` on the event loop) waits, bounded, until the read models include it,
so the same user's next request sees its effect.

The threadpool is small on purpose: every thread in it competes for the GIL, and with
one thread per concurrent request (anyio's default allows 40) a third of the server's
CPU time went to the kernel, handing the GIL around (futex calls). Sixteen threads keep
the committers' group commits full (api.storage.events) without the convoy.
For the same reason reads use two aiosqlite connections (threads): on two cores, GET
/messages/{id} measured 2,500 requests/s with two, 2,100 with one and 2,200 with four or
eight, whose p99 was also twice as long.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from api.bootstrap import check_storage, load_config, open_app
from api.http.errors import log
from api.http.ratelimit import RateLimits, TaskRequestLimits
from api.http.scaleout import ScaleOut, shared_from_env
from api.http.shared_claims import SharedClaims
from api.storage.log_reads import PostgresReadPool, open_log_reads
from api.storage.logdb import Location, connect_log, log_location, store_url
from api.storage.positions import last_position
from api.storage.reads import ReadPool, connect_reader
from api.storage.unreachable import store_unreachable
from domain.model.api_client import ApiClient
from domain.model.config import TreeConfig
from domain.model.errors import ConfigError
from domain.model.user import User, user_id_for
from domain.service.application import DataEngine
from domain.service.handout import Handout
from domain.service.processes import Lottery, ProcessLoop
from projections import identity
from projections.audit.live import AuditFollower
from projections.log import StoreLog
from projections.queries import log as log_queries
from projections.runner import ProjectionError, ProjectionRunner
from projections.store import READMODEL_FILE

ROOT_TOKENS_ENV = "DATAENGINE_ROOT_TOKENS"
WEB_API_KEY_ENV = "DATAENGINE_WEB_API_KEY"
THREADS_ENV = "DATAENGINE_HTTP_THREADS"  # command threads (default 16)
READERS_ENV = "DATAENGINE_HTTP_READERS"  # read-model connections for reads (default 2)
R = TypeVar("R")


def _count_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, not {raw!r}")
    return value


def root_tokens_from_env(environ: dict[str, str] | None = None) -> frozenset[str]:
    raw = (os.environ if environ is None else environ).get(ROOT_TOKENS_ENV, "")
    return frozenset(t.strip() for t in raw.split(",") if t.strip())


PROCESS_INTERVAL_ENV = "DATAENGINE_PROCESS_INTERVAL"


def process_interval_from_env() -> float:
    """Seconds between process rounds; 0 turns them off (another process runs them)."""
    raw = os.environ.get(PROCESS_INTERVAL_ENV, "5")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"{PROCESS_INTERVAL_ENV} must be a number of seconds >= 0, not {raw!r}")
    return value


class Service:
    def __init__(
        self,
        folder: Path,
        config: TreeConfig | None = None,
        *,
        root_tokens: frozenset[str] | None = None,
        web_api_key: str | None = None,
        catch_up_timeout: float = 2.0,
        seed: int | None = None,
        rate_limits: RateLimits | None = None,
        process_interval: float | None = None,
    ):
        self.folder = Path(folder)
        # The log is named once: the engine, the runner and every reader of this server use
        # the same one, even where the process's environment changes later (an embedder).
        self.store = store_url()
        self.log: Location = log_location(self.folder)
        # Task expiry, backlog activation and the prompt lottery run beside the server.
        self.process_interval = (
            process_interval if process_interval is not None else process_interval_from_env()
        )
        self.task_limits = TaskRequestLimits(rate_limits or RateLimits.from_env())
        self.config = config
        self.root_tokens = root_tokens_from_env() if root_tokens is None else root_tokens
        self.web_api_key = (
            web_api_key if web_api_key is not None else os.environ.get(WEB_API_KEY_ENV)
        )
        self.catch_up_timeout = catch_up_timeout
        self.rng = random.Random(seed)
        self.process_rng = random.Random(None if seed is None else seed + 1)
        self.lottery: Lottery | None = None
        self._local = threading.local()
        self.engine: DataEngine | None = None
        self.runner: ProjectionRunner | None = None
        self.audit: AuditFollower | None = None  # the live audit chain (projections.audit.live)
        self.handout: Handout | None = None
        self.processes: ProcessLoop | None = None
        self.threads = _count_from_env(THREADS_ENV, 16)
        self.readers = _count_from_env(READERS_ENV, 2)
        self._executor: ThreadPoolExecutor | None = None
        self._reads: ReadPool | None = None
        self._log_reads: ReadPool | PostgresReadPool | None = None
        # Other server processes on this store (api.http.scaleout): set up by ``open``.
        self.shared = shared_from_env()
        self.scaleout: ScaleOut | None = None
        self.readmodel_path = self.folder / READMODEL_FILE

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> Service:
        """``open`` (in the threadpool), then the read pools (on the loop)."""
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="command")
        try:
            await self.blocking(self.open)
            # after open: the runner has created the read model and set it to WAL
            self._reads = await ReadPool(self.readmodel_path, self.readers).open()
            self._log_reads = await open_log_reads(self.log, 2)
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        for pool in (self._reads, self._log_reads):
            if pool is not None:
                await pool.close()
        self._reads = self._log_reads = None
        executor = self._executor
        if executor is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(executor, self.close)
            finally:
                executor.shutdown(wait=True)
                self._executor = None

    async def blocking(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """``fn`` in the command threadpool (a plain executor: anyio's hand-off costs
        about three times as much per call)."""
        executor = self._executor
        if executor is None:
            raise RuntimeError("the service is not started")
        call = partial(fn, *args, **kwargs) if kwargs else (partial(fn, *args) if args else fn)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    @property
    def reads(self) -> ReadPool:
        assert self._reads is not None, "the service is not started"
        return self._reads

    @property
    def log_reads(self) -> ReadPool | PostgresReadPool:
        assert self._log_reads is not None, "the service is not started"
        return self._log_reads

    def open(self) -> Service:
        check_storage(self.folder)  # a read-only folder stops start-up, naming file and cause
        scaleout = self._open_scaleout() if self.shared else None  # before the app: its cache
        engine = open_app(self.folder, self.config or load_config(self.folder), store=self.store)
        if self.web_api_key:
            engine.register_client(
                name="official web client",
                api_key=self.web_api_key,
                trusted=True,
                frontend_type="web",
            )
        # following the log, the runner also evicts cached aggregates other processes changed
        runner = ProjectionRunner(
            StoreLog(self.log), self.readmodel_path, observe=engine.forget_moved
        )
        runner.run_once()  # catch up before serving, so the first reads are current
        runner.start()
        if scaleout is None:
            self.audit = AuditFollower(self.folder, self.log).start()
        else:  # one live audit chain among the processes
            scaleout.follow_audit(lambda: AuditFollower(self.folder, self.log).start())
        self.engine, self.runner = engine, runner
        self.handout = Handout(
            engine,
            self.reader,
            self.rng,
            # other processes hand out too: their tasks in the read model before choosing
            before_read=(lambda: self.catch_up(self.head())) if scaleout else None,
            position=lambda: runner.position,
        )
        if scaleout is not None:  # every process's claims, not only this one's
            self.handout.claims = SharedClaims(lambda: runner.position, scaleout.claims)
        self.lottery = Lottery(
            engine,
            self.rng,
            lease=scaleout and scaleout.lottery_lease,
            head=self.head if scaleout else None,
        )
        if self.process_interval > 0:
            # Its own random source: background draws must not shift a seeded hand-out sequence.
            self.processes = ProcessLoop(
                engine,
                runner,
                interval=self.process_interval,
                rng=self.process_rng,
                lottery=self.run_lottery,
                lease=scaleout and scaleout.process_lease,
            ).start()
        return self

    def _open_scaleout(self) -> ScaleOut:
        scaleout = self.scaleout = ScaleOut(self.folder, self.log)
        self.readmodel_path = scaleout.readmodel
        self.task_limits = TaskRequestLimits(self.task_limits.limits, scaleout.rate_log)
        return scaleout

    def close(self) -> None:
        try:
            if self.processes is not None:
                self.processes.stop()
                self.processes = None
            if self.runner is not None:
                self.runner.close()
            if self.audit is not None:
                self.audit.close()
                self.audit = None
            if self.scaleout is not None:
                self.scaleout.close()
                self.scaleout = None
        except ProjectionError:  # already reported by /health; the store must still close
            log.error("the projection runner had stopped", exc_info=True)
        finally:
            if self.engine is not None:
                self.engine.close()
            self.engine = self.runner = self.handout = None

    @property
    def app(self) -> DataEngine:
        assert self.engine is not None, "the service is not open"
        return self.engine

    # ------------------------------------------------------------------ consistency
    def readmodel_problem(self) -> str | None:
        """Why the read models cannot be served (None: they can): a stopped runner, or a
        read model whose recorded log position and fingerprint are not the log's."""
        runner = self.runner
        if runner is None:
            return "the read models are not open"
        if runner.error is not None and runner.waiting_for_space:
            what = "the event store" if store_unreachable(runner.error) else "disk space"
            return f"the read model waits for {what} (it resumes by itself): {runner.error}"
        if runner.error is not None:
            return f"the projection runner stopped: {runner.error}"
        source = StoreLog(self.log)
        try:
            return identity.mismatch(self.reader(), source, quick_check=False)
        finally:
            source.close()

    def head(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    async def head_async(self) -> int:
        return await log_queries.head(self.log_reads.rows)

    def catch_up(self, position: int | None) -> None:
        """Wait until the read models include ``position`` (bounded; late is still correct);
        None: nothing was recorded, nothing to wait for.

        The command is committed before this is called, so a stopped runner must not turn
        its success into an error: the answer goes out, /health reports the runner."""
        if position is not None and self.runner is not None:
            self.runner.wake()  # an idle runner reads the log now, not at its next poll
            try:
                self.runner.catch_up(position, timeout=self.catch_up_timeout)
            except ProjectionError:
                log.error("read models are not following the log", exc_info=True)

    async def catch_up_async(self, position: int | None) -> None:
        """``catch_up`` on the event loop: the request's thread is free while it waits, so
        waiting requests do not crowd the threadpool (nor the GIL) the runner needs."""
        runner = self.runner
        if position is None or runner is None or runner.position >= position:
            return
        runner.wake()  # an idle runner reads the log now, not at its next poll
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + self.catch_up_timeout, 0.0005
        while runner.position < position and runner.error is None and loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.004)

    def position_of(self, *aggregate_ids: UUID) -> int | None:
        """The log position of the latest event of these aggregates: what to catch up
        with after a command that does not report its position."""
        return last_position(self.events_reader(), aggregate_ids)

    def events_reader(self) -> Any:
        """This thread's read-only connection to the event store (SQLite WAL: never blocks
        writers; or the PostgreSQL store, api.storage.logdb)."""
        conn = getattr(self._local, "events", None)
        if conn is None:
            conn = self._local.events = connect_log(self.log)
        return conn

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection to the read model (api.storage.reads)."""
        assert self.runner is not None, "the service is not open"
        conn = getattr(self._local, "readmodel", None)
        if conn is None:
            conn = self._local.readmodel = connect_reader(self.readmodel_path)
        return conn

    def run_lottery(self) -> None:
        """The prompt lottery OA draws before a hand-out (domain.service.processes.Lottery)."""
        if self.lottery is not None:
            self.lottery.draw(self.reader(), self.catch_up)

    # ------------------------------------------------------------------ identities
    def authenticate(self, api_key: str | None) -> ApiClient | None:
        return self.app.authenticate(api_key)

    async def authenticate_async(self, api_key: str | None) -> ApiClient | None:
        """``authenticate`` on the loop when the client is in the aggregate cache (the
        same checks on the same object); otherwise the store is read in the threadpool."""
        found = self.app.authenticate_cached(api_key)
        if found is False:
            return await self.blocking(self.app.authenticate, api_key)
        return found if isinstance(found, ApiClient) else None

    def ensure_user(
        self,
        client: ApiClient,
        auth_method: str,
        username: str,
        display_name: str | None,
        **profile: Any,
    ) -> UUID:
        """The user, created on first sight (a deleted user stays deleted: the command says)."""
        return self.app.ensure_user(
            client_id=client.id,
            auth_method=auth_method,
            username=username,
            display_name=display_name,
            **profile,
        )

    def find_user(self, user_id: UUID) -> User | None:
        """The user aggregate as cached, to read (never to change), or None."""
        return self.app.find_user(user_id)

    async def find_user_async(self, user_id: UUID) -> User | None:
        """``find_user`` without a hop when the user is cached."""
        user = self.app.find_user_cached(user_id)
        if user is None:
            return await self.blocking(self.app.find_user, user_id)
        return user

    @staticmethod
    def user_id(client: ApiClient, auth_method: str, username: str) -> UUID:
        return user_id_for(client.id, auth_method, username)

    # ------------------------------------------------------------------ look-ups
    def tree_of(self, message_id: UUID) -> UUID:
        """The tree a message belongs to, from the log (404 when no tree holds it)."""
        return self.app.tree_of_message(message_id)

    def task_owner(self, task_id: UUID) -> UUID:
        """The user a task was handed to, from the log's task index (never a read model:
        an ack right after the hand-out must not wait for the projections)."""
        return self.app.task_owner(task_id)
