"""What the HTTP handlers share: the application, the projection runner, the hand-out,
the threadpool for commands and the aiosqlite pools for reads.

Opened by the app's lifespan (``start``) and closed with it (``stop``). Command handlers
run in the threadpool and call the synchronous DataEngine directly, reading the read
model through one SQLite connection per thread; read handlers run on the event loop and
query through aiosqlite (api.storage.reads). After a command, ``settle(position)`` waits
(bounded) until the read models include it, so the same user's next request sees its
effect.

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

from eventsourcing.application import AggregateNotFoundError

from api.bootstrap import load_config, open_app
from api.http.errors import HttpError, log
from api.http.ratelimit import RateLimits, TaskRequestLimits

# A language with a prompt waiting in the lottery and fewer growing trees than allowed.
from api.storage.events import EVENTS_FILE
from api.storage.reads import ReadPool, connect_reader
from domain.model.api_client import ApiClient, client_id_for_key
from domain.model.config import TreeConfig
from domain.model.errors import ConfigError, ErrorCode, MessageNotFoundError, UserDisabledError
from domain.model.user import User, user_id_for
from domain.service.application import DataEngine
from domain.service.handout import Handout
from domain.service.processes import ProcessLoop, prompt_lottery
from projections.log import SQLiteLog
from projections.runner import ProjectionError, ProjectionRunner
from projections.store import READMODEL_FILE

# A language with a prompt waiting in the lottery and fewer growing trees than allowed.
_LOTTERY_ROOM = """
SELECT 1 FROM (SELECT DISTINCT lang FROM trees WHERE state = 'prompt_lottery_waiting') w
WHERE (SELECT count(*) FROM trees g WHERE g.state = 'growing' AND g.lang = w.lang) < ?
LIMIT 1"""

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
        settle_timeout: float = 2.0,
        seed: int | None = None,
        rate_limits: RateLimits | None = None,
        process_interval: float | None = None,
    ):
        self.folder = Path(folder)
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
        self.settle_timeout = settle_timeout
        self.rng = random.Random(seed)
        self.process_rng = random.Random(None if seed is None else seed + 1)
        self._lottery = threading.Lock()
        self._local = threading.local()
        self.engine: DataEngine | None = None
        self.runner: ProjectionRunner | None = None
        self.handout: Handout | None = None
        self.processes: ProcessLoop | None = None
        self.threads = _count_from_env(THREADS_ENV, 16)
        self.readers = _count_from_env(READERS_ENV, 2)
        self._executor: ThreadPoolExecutor | None = None
        self._reads: ReadPool | None = None
        self._log_reads: ReadPool | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> Service:
        """``open`` (in the threadpool), then the read pools (on the loop)."""
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="command")
        try:
            await self.blocking(self.open)
            # after open: the runner has created the read model and set it to WAL
            self._reads = await ReadPool(self.folder / READMODEL_FILE, self.readers).open()
            self._log_reads = await ReadPool(self.folder / EVENTS_FILE, 2).open()
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
    def log_reads(self) -> ReadPool:
        assert self._log_reads is not None, "the service is not started"
        return self._log_reads

    def open(self) -> Service:
        self.folder.mkdir(parents=True, exist_ok=True)
        engine = open_app(self.folder, self.config or load_config(self.folder))
        if self.web_api_key:
            engine.register_client(
                name="official web client",
                api_key=self.web_api_key,
                trusted=True,
                frontend_type="web",
            )
        runner = ProjectionRunner(
            SQLiteLog(self.folder / EVENTS_FILE), self.folder / READMODEL_FILE
        )
        runner.run_once()  # catch up before serving, so the first reads are current
        runner.start()
        self.engine, self.runner = engine, runner
        self.handout = Handout(engine, self.reader, self.rng, position=lambda: runner.position)
        if self.process_interval > 0:
            # Its own random source: background draws must not shift a seeded hand-out sequence.
            self.processes = ProcessLoop(
                engine,
                runner,
                interval=self.process_interval,
                rng=self.process_rng,
                lottery=self.run_lottery,
            ).start()
        return self

    def close(self) -> None:
        try:
            if self.processes is not None:
                self.processes.stop()
                self.processes = None
            if self.runner is not None:
                self.runner.close()
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
    def head(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    async def head_async(self) -> int:
        row = await self.log_reads.row("SELECT max(rowid) FROM stored_events")
        return (row[0] if row else None) or 0

    def settle(self, position: int | None) -> None:
        """Wait until the read models include ``position`` (bounded; late is still correct).

        The command is committed before this is called, so a stopped runner must not turn
        its success into an error: the answer goes out, /health reports the runner."""
        if position is not None and self.runner is not None:
            try:
                self.runner.wait_for(position, timeout=self.settle_timeout)
            except ProjectionError:
                log.error("read models are not following the log", exc_info=True)

    async def settle_async(self, position: int | None) -> None:
        """``settle`` on the event loop: the request's thread is free while it waits, so
        waiting requests do not crowd the threadpool (nor the GIL) the runner needs."""
        runner = self.runner
        if position is None or runner is None or runner.position >= position:
            return
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + self.settle_timeout, 0.0005
        while runner.position < position and runner.error is None and loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.004)

    def settle_head(self) -> None:
        """For commands that do not report their position: wait for everything logged."""
        self.settle(self.head())

    def position_of(self, *aggregate_ids: UUID) -> int | None:
        """The log position of the latest event of these aggregates: what to settle on
        after a command that does not report its position (hand-out, nack, profile)."""
        marks = ",".join("?" * len(aggregate_ids))
        row = (
            self.events_reader()
            .execute(
                f"SELECT max(rowid) FROM stored_events WHERE originator_id IN ({marks})",
                [i.hex for i in aggregate_ids],
            )
            .fetchone()
        )
        return row[0] if row else None

    def events_reader(self) -> sqlite3.Connection:
        """This thread's read-only connection to the event store (WAL: never blocks writers)."""
        conn = getattr(self._local, "events", None)
        if conn is None:
            conn = self._local.events = sqlite3.connect(
                f"file:{self.folder / EVENTS_FILE}?mode=ro", uri=True, check_same_thread=False
            )
        return conn

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection to the read model (api.storage.reads)."""
        assert self.runner is not None, "the service is not open"
        conn = getattr(self._local, "readmodel", None)
        if conn is None:
            conn = self._local.readmodel = connect_reader(self.folder / READMODEL_FILE)
        return conn

    def run_lottery(self) -> None:
        """OA runs the prompt lottery before handing out. One draw at a time, so two
        concurrent requests never both fill the same free slot; a request that finds a
        draw under way does not wait for it (that draw serves it). With no waiting prompt
        in a language that has room (fewer than ``max_active_trees`` growing) the draw
        would activate nothing, so it is not run: its weights come from every ranking
        of the last month (tens of ms on a large read model), and prompts usually wait
        while every language is full."""
        room = self.reader().execute(_LOTTERY_ROOM, (self.app.config.max_active_trees,)).fetchone()
        if room is None or not self._lottery.acquire(blocking=False):
            return
        try:
            for _, position in prompt_lottery(self.app, self.reader(), self.rng):
                self.settle(position)
        finally:
            self._lottery.release()

    # ------------------------------------------------------------------ identities
    def authenticate(self, api_key: str | None) -> ApiClient | None:
        return self.app.authenticate(api_key) if api_key else None

    async def authenticate_async(self, api_key: str | None) -> ApiClient | None:
        """``authenticate`` on the loop when the client is in the aggregate cache (the
        same checks on the same object); otherwise the store is read in the threadpool."""
        if not api_key:
            return None
        client = self._cached(client_id_for_key(api_key))
        if client is None:
            return await self.blocking(self.authenticate, api_key)
        if not isinstance(client, ApiClient) or not client.enabled or not client.matches(api_key):
            return None
        return client

    def _cached(self, aggregate_id: UUID) -> Any:
        cache = self.app.repository.cache
        if cache is None:
            return None
        try:
            return cache.get(aggregate_id)
        except KeyError:
            return None

    def ensure_user(
        self,
        client: ApiClient,
        auth_method: str,
        username: str,
        display_name: str | None,
        **profile: Any,
    ) -> UUID:
        """The user, created on first sight. A deleted (anonymised) user stays deleted: its
        front end naming it again must not put its display name back."""
        user = self.find_user(user_id_for(client.id, auth_method, username))
        if user is not None and user.deleted:
            raise UserDisabledError(f"user {auth_method}:{username} was deleted")
        return self.app.ensure_user(
            client_id=client.id,
            auth_method=auth_method,
            username=username,
            display_name=display_name,
            **profile,
        )

    def find_user(self, user_id: UUID) -> User | None:
        """The user aggregate as cached, to read (never to change), or None."""
        try:
            user = self.app.repository.get(user_id, deepcopy_from_cache=False)
        except AggregateNotFoundError:
            return None
        return user if isinstance(user, User) else None

    async def find_user_async(self, user_id: UUID) -> User | None:
        """``find_user`` without a hop when the user is cached."""
        user = self._cached(user_id)
        if user is None:
            return await self.blocking(self.find_user, user_id)
        return user if isinstance(user, User) else None

    @staticmethod
    def user_id(client: ApiClient, auth_method: str, username: str) -> UUID:
        return user_id_for(client.id, auth_method, username)

    # ------------------------------------------------------------------ read-model lookups
    def tree_of(self, message_id: UUID) -> UUID:
        """The tree a message belongs to; 404 when no tree holds it."""
        sql = "SELECT tree_id FROM messages WHERE message_id = ?"
        row = self.reader().execute(sql, (str(message_id),)).fetchone()
        if row is None:  # maybe written a moment ago by someone else
            self.settle_head()
            row = self.reader().execute(sql, (str(message_id),)).fetchone()
        if row is None:
            raise MessageNotFoundError(f"message {message_id} not found")
        return UUID(row[0])

    def task_owner(self, task_id: UUID) -> UUID:
        sql = "SELECT user_id FROM tasks WHERE task_id = ?"
        row = self.reader().execute(sql, (str(task_id),)).fetchone()
        if row is None:
            self.settle_head()
            row = self.reader().execute(sql, (str(task_id),)).fetchone()
        if row is None:
            raise HttpError(f"task {task_id} not found", ErrorCode.TASK_NOT_FOUND, 404)
        return UUID(row[0])
