"""Processes: followers of the read model that issue commands back to the application.

Each decides from current read-model state (the backlog's chance rule also from the
transitions logged since it started), never from a replayed event, so running one again
(after a restart, during a rebuild, twice in a row) does nothing new: a tree that was
already activated or a task that already expired is simply no longer selected, and a
command refused by the aggregate because another process got there first is ignored.
``ProcessLoop`` runs them all every few seconds beside the server or the CLI.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from api.storage.space import disk_full
from api.storage.unreachable import store_unreachable
from domain.model.catalogue import event_classes, topics_of
from domain.model.errors import DomainError
from domain.model.states import ACTIVE_STATES, TreeState
from domain.model.tree import ConversationTree
from projections.log import LogSource, SQLiteLog

log = logging.getLogger("dataengine.processes")

_WAITING_PROMPTS = """
SELECT t.tree_id, t.lang, t.user_id FROM trees t
WHERE t.state = 'prompt_lottery_waiting' ORDER BY t.created_at, t.tree_id"""

# How often each author's replies were ranked first in a single ranking in the last month
# (OA's monthly reply_ranked_1), the weight of their waiting prompts in the lottery.
_RANKED_FIRST = """
SELECT m.user_id, count(*) FROM rankings r
JOIN messages m ON m.message_id = json_extract(r.ranked, '$[0]')
WHERE r.created_at >= ? AND m.user_id IS NOT NULL GROUP BY m.user_id"""


# A language with a prompt waiting in the lottery and fewer growing trees than allowed.
_LOTTERY_ROOM = """
SELECT 1 FROM (SELECT DISTINCT lang FROM trees WHERE state = 'prompt_lottery_waiting') w
WHERE (SELECT count(*) FROM trees g WHERE g.state = 'growing' AND g.lang = w.lang) < ?
LIMIT 1"""


class Lottery:
    """OA runs the prompt lottery before handing out. One draw at a time, so two
    concurrent requests never both fill the same free slot; a request that finds a draw
    under way does not wait for it (that draw serves it). With no waiting prompt in a
    language that has room (fewer than ``max_active_trees`` growing) the draw would
    activate nothing, so it is not run: its weights come from every ranking of the last
    month (tens of ms on a large read model), and prompts usually wait while every
    language is full."""

    def __init__(self, app: Any, rng: random.Random, *, lease: Any = None, head: Any = None):
        self.app, self.rng = app, rng
        self._lock = threading.Lock()
        # Several server processes: one draw at a time among them too (``lease``, taken
        # per draw), each on a read model caught up with the log's ``head`` first.
        self.lease, self.head = lease, head

    def draw(
        self, conn: sqlite3.Connection, catch_up: Callable[[int | None], Any]
    ) -> list[tuple[UUID, int | None]]:
        """Draw if there is room; ``catch_up(position)`` after each activation."""
        room = conn.execute(_LOTTERY_ROOM, (self.app.config.max_active_trees,)).fetchone()
        if room is None or not self._lock.acquire(blocking=False):
            return []
        try:
            if self.lease is not None:
                if not self.lease.held():
                    return []  # another process draws now
                if self.head is not None:
                    catch_up(self.head())
            drawn = prompt_lottery(self.app, conn, self.rng)
            for _, position in drawn:
                catch_up(position)
            return drawn
        finally:
            if self.lease is not None:
                self.lease.release()
            self._lock.release()


def prompt_lottery(
    app: Any, conn: sqlite3.Connection, rng: random.Random, now: datetime | None = None
) -> list[tuple[UUID, int | None]]:
    """Promote waiting prompts to growing while their language has room.

    Returns (tree id, log position) per activation, so a caller can wait for the read model.
    """
    config = app.config
    now = now or app.now()
    growing = dict(
        conn.execute(
            "SELECT lang, count(*) FROM trees WHERE state = 'growing' GROUP BY lang"
        ).fetchall()
    )
    waiting: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for tree_id, lang, user_id in conn.execute(_WAITING_PROMPTS):
        waiting[lang].append((tree_id, user_id))
    if not waiting:
        return []
    since = (now - timedelta(days=30)).timestamp()
    ranked_first = dict(conn.execute(_RANKED_FIRST, (since,)).fetchall())
    activated = []
    for lang in sorted(waiting):
        candidates = waiting[lang]
        slots = config.max_active_trees - growing.get(lang, 0)
        while slots > 0 and candidates:
            weights = [1 + ranked_first.get(user_id, 0) for _, user_id in candidates]
            index = rng.choices(range(len(candidates)), weights=weights)[0]
            tree_id, _ = candidates.pop(index)
            try:
                position = app.activate_tree(tree_id=UUID(tree_id), reason="prompt_lottery")
            except DomainError:
                continue  # moved on since the read model saw it (halted, activated elsewhere)
            activated.append((UUID(tree_id), position))
            slots -= 1
    return activated


def expire_tasks(
    app: Any, conn: sqlite3.Connection, now: datetime | None = None
) -> dict[UUID, list[UUID]]:
    """Expire open tasks past their expiry time; returns the expired task ids per user."""
    now = now or app.now()
    users = [
        UUID(u)
        for (u,) in conn.execute(
            "SELECT DISTINCT user_id FROM tasks WHERE status = 'open' AND expires_at <= ?"
            " ORDER BY user_id",
            (now.timestamp(),),
        )
    ]
    expired = {}
    for user_id in users:
        ids = app.expire_tasks(user_id=user_id)
        if ids:
            expired[user_id] = ids
    return expired


# ---------------------------------------------------------------- backlog activation
_ACTIVE = frozenset(s.value for s in ACTIVE_STATES)
_LOTTERY = TreeState.PROMPT_LOTTERY_WAITING.value
# Every kind of state change (stored and current topics); a resume never leaves an active state.
_LEAVING = frozenset(topics_of(*event_classes(ConversationTree, ConversationTree.StateChanged)))

# Incomplete rankings (OA's query_incomplete_rankings, no user): parents with two or more
# accepted, undeleted children of a rankable role and fewer rankings than required (the
# domain's rankable_parents), in one tree or in a language's trees in ranking. Open
# ranking tasks do not make a ranking complete here.
_INCOMPLETE = """
SELECT count(*) FROM (
  SELECT c.parent_id FROM messages c JOIN messages p ON p.message_id = c.parent_id{join}
  WHERE {where} AND c.review_result = 1 AND c.deleted = 0
    AND c.parent_id IS NOT NULL AND c.role IN (SELECT value FROM json_each(:roles))
    AND p.deleted = 0 AND p.rankings_received < :required
  GROUP BY c.parent_id, c.role HAVING count(*) > 1)"""
_OPEN_IN_TREE = _INCOMPLETE.format(join="", where="c.tree_id = :tree")
_OPEN_IN_LANG = _INCOMPLETE.format(
    join=" JOIN trees t ON t.tree_id = c.tree_id", where="t.state = 'ranking' AND t.lang = :lang"
)


class BacklogActivation:
    """OA's two rules for moving imported ``backlog_ranking`` trees into ``ranking``
    (reference §1.1, tree_manager ``_enter_state`` / ``activate_backlog_tree``):

    - chance: each time a tree leaves a working state for a state without tasks (scored,
      aborted, halted, scoring failed), with probability ``p_activate_backlog_tree`` one
      backlog tree of its language is activated. OA does this inside the transition; here
      the transitions logged since the process started are read from the log, so a
      restart or a rebuild never draws for an old transition again (one logged while no
      process ran is not drawn for; OA loses its draw when the backlog is empty too).
      Entering ``prompt_lottery_waiting`` does not count (OA's flag quirk).
    - floor: while a language has fewer than ``min_active_rankings_per_lang`` incomplete
      rankings (parents in ``ranking`` trees still needing rankings), activate another.
      OA checks this at the same transitions; a sweep checks it whenever it runs.

    Backlog trees go oldest first (root creation time, then id; OA takes an arbitrary
    one). A tree with nothing to rank goes to ``aborted_low_grade`` instead (the
    aggregate decides) and does not count: the next one is tried, as in OA.
    """

    def __init__(
        self,
        app: Any,
        log_source: LogSource,
        rng: random.Random | None = None,
        *,
        start: int | None = None,
    ):
        self.app = app
        self.log = log_source
        self.rng = rng or random.Random()
        self.mark = log_source.head() if start is None else start  # transitions seen so far

    def draws(self, conn: sqlite3.Connection, until: int | None = None) -> Counter[str]:
        """Backlog activations won per language by the transitions logged after ``mark``
        up to ``until`` (default: the log's head); moves the mark."""
        until = self.log.head() if until is None else until
        p = self.app.config.p_activate_backlog_tree
        won: Counter[str] = Counter()
        while self.mark < until:
            rows = self.log.read(self.mark, min(1000, until - self.mark))
            if not rows:
                break
            for row in rows:
                if row[3] not in _LEAVING:
                    continue
                event = self.log.decode(row)
                if (
                    event.from_state in _ACTIVE
                    and event.to_state not in _ACTIVE
                    and event.to_state != _LOTTERY
                    and self.rng.random() < p
                ):
                    found = conn.execute(
                        "SELECT lang FROM trees WHERE tree_id = ?", (str(event.originator_id),)
                    ).fetchone()
                    if found is not None:
                        won[found[0]] += 1
            self.mark = rows[-1][0]
        return won

    def run(
        self, conn: sqlite3.Connection, until: int | None = None
    ) -> list[tuple[UUID, int | None]]:
        """Apply both rules; (tree id, log position) per activation, aborted ones included.
        ``until``: the log position the read model holds (transitions after it wait)."""
        config = self.app.config
        won = self.draws(conn, until)
        floor = config.min_active_rankings_per_lang
        if not won and floor <= 0:
            return []
        params = {
            "roles": json.dumps(
                ["assistant", "prompter"] if config.rank_prompter_replies else ["assistant"]
            ),
            "required": config.num_required_rankings,
        }
        activated: list[tuple[UUID, int | None]] = []
        langs = [
            lang
            for (lang,) in conn.execute(
                "SELECT DISTINCT lang FROM trees WHERE state = 'backlog_ranking' ORDER BY lang"
            )
        ]
        for lang in langs:
            owed = won.get(lang, 0)
            open_ = (
                conn.execute(_OPEN_IN_LANG, params | {"lang": lang}).fetchone()[0]
                if floor > 0
                else 0
            )
            if owed <= 0 and open_ >= floor:
                continue
            queue = conn.execute(
                "SELECT tree_id FROM trees WHERE state = 'backlog_ranking'"
                " AND lang = ? ORDER BY created_at, tree_id",
                (lang,),
            ).fetchall()
            for (tree_id,) in queue:
                if owed <= 0 and open_ >= floor:
                    break
                parents = conn.execute(_OPEN_IN_TREE, params | {"tree": tree_id}).fetchone()[0]
                try:
                    position = self.app.activate_tree(tree_id=UUID(tree_id), reason="backlog")
                except DomainError:
                    # Moved on since the read model saw it (activated, halted): the counts
                    # are stale too, so this language waits for the next round.
                    break
                activated.append((UUID(tree_id), position))
                if parents:
                    owed -= 1
                    open_ += parents
        return activated


# ---------------------------------------------------------------- running them
@dataclass
class Sweep:
    """What one round of the processes did."""

    expired: dict[UUID, list[UUID]] = field(default_factory=dict)
    backlog: list[tuple[UUID, int | None]] = field(default_factory=list)
    lottery: list[tuple[UUID, int | None]] = field(default_factory=list)


class ProcessLoop:
    """Task expiry, backlog activation and the prompt lottery, every ``interval`` seconds.

    Each round first lets the read model catch up with the log, and afterwards waits
    until it holds the round's own commands, so the next round never acts twice on a
    stale row. ``lottery``: the server passes its own (it also draws before hand-outs,
    under a lock); by default the loop draws itself. A failing round is logged and the
    next one runs as usual.
    """

    def __init__(
        self,
        app: Any,
        runner: Any,
        *,
        interval: float = 5.0,
        rng: random.Random | None = None,
        lottery: Callable[[], Any] | None = None,
        timeout: float = 5.0,
        lease: Any = None,
    ):
        self.app, self.runner = app, runner
        # Several server processes on one store: only the holder of ``lease``
        # (api.storage.leases) runs rounds; another takes it over when its holder dies.
        self.lease = lease
        self.interval = interval
        self.rng = rng or random.Random()
        self.lottery = lottery
        self.timeout = timeout  # the longest wait for the read model to catch up
        # Its own reader of the log: the runner's thread uses the runner's connection.
        source = runner.log
        if isinstance(source, SQLiteLog):
            source = SQLiteLog(source.path)
        self.backlog = BacklogActivation(app, source, self.rng)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> Sweep:
        runner = self.runner
        if self.lease is not None and not self.lease.held():
            # not ours: keep the backlog's mark at the head, so a takeover never draws
            # again for transitions the holder has already drawn for
            self.backlog.mark = self.backlog.log.head()
            return Sweep()
        if not runner.catch_up(runner.log.head(), self.timeout):
            return Sweep()  # the read model lags: deciding on it could act twice
        conn = runner.readmodel.reader()
        sweep = Sweep(expired=expire_tasks(self.app, conn))
        sweep.backlog = self.backlog.run(conn, until=runner.position)
        self._catch_up(sweep.backlog)
        if self.lottery is not None:
            self.lottery()
        else:
            sweep.lottery = prompt_lottery(self.app, conn, self.rng)
            self._catch_up(sweep.lottery)
        runner.catch_up(runner.log.head(), self.timeout)
        return sweep

    def _catch_up(self, done: list[tuple[UUID, int | None]]) -> None:
        positions = [p for _, p in done if p is not None]
        if positions:
            self.runner.catch_up(max(positions), timeout=self.timeout)

    def start(self) -> ProcessLoop:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="processes", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
                if self.error is not None and disk_full(self.error):
                    log.warning("disk space is back: process rounds run again")
                self.error = None
            except Exception as e:  # noqa: BLE001 - reported, and the next round tries again
                if store_unreachable(e):  # one line a round while PostgreSQL is down
                    log.error("a process round waits for the event store: %s", e)
                elif not disk_full(e):
                    log.error("a process round failed", exc_info=True)
                elif self.error is None or not disk_full(self.error):
                    # one line, not a traceback every round, while the disk stays full
                    log.error("process rounds wait for disk space (retrying): %s", e)
                self.error = e
            self._stop.wait(self.interval)

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self.lease is not None:  # a stopped loop leaves the rounds to another process
            self.lease.release()
        if self.backlog.log is not self.runner.log and isinstance(self.backlog.log, SQLiteLog):
            self.backlog.log.close()  # opened again if the loop runs another round
