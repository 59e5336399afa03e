"""OA's rate limits on ``POST /tasks/`` (reference §6.2), kept in process.

Per user (API client, auth method, id): 30 task requests per 4 minutes; explicitly
requested ``assistant_reply`` tasks 4 per 2 minutes and ``prompter_reply`` 8 per 2 minutes
(a ``random`` request that turns into a reply is not counted there, as in OA); a request
without a user counts against its API client, 10,000 per minute.

OA used fastapi-limiter's fixed windows in Redis; this is a sliding-window log: a key
may have at most ``times`` admitted requests in any ``seconds`` long window, which is
exactly "N per T" with no burst at a window edge. One process serves the store (it has
one writer), so memory is the right place: no Redis, nothing to keep in step. A refused
request is not recorded, so it neither counts nor pushes the next admission back, and the
rules a request is under are checked together and recorded together (all or none).

Configured from the environment: ``DATAENGINE_RATE_LIMIT=false`` turns it off (as OA's
``RATE_LIMIT``), and ``DATAENGINE_RATE_LIMIT_<RULE>=<times>/<seconds>`` changes a rule.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from api.http.errors import HttpError
from domain.model.errors import ConfigError, ErrorCode

ENV = "DATAENGINE_RATE_LIMIT"


class Rule(NamedTuple):
    times: int
    seconds: float

    @classmethod
    def parse(cls, raw: str, name: str) -> Rule:
        times, sep, seconds = raw.partition("/")
        try:
            rule = cls(int(times), float(seconds))
        except ValueError:
            rule = None
        if not sep or rule is None or rule.times < 1 or not 0 < rule.seconds < math.inf:
            raise ConfigError(f"{name} must be '<times>/<seconds>' with both positive, not {raw!r}")
        return rule


# OA's numbers (reference §6.2)
USER_TASKS, ASSISTANT_REPLY, PROMPTER_REPLY, CLIENT = (
    Rule(30, 240),
    Rule(4, 120),
    Rule(8, 120),
    Rule(10_000, 60),
)


@dataclass(frozen=True)
class RateLimits:
    enabled: bool = True
    user_tasks: Rule = USER_TASKS
    assistant_reply: Rule = ASSISTANT_REPLY
    prompter_reply: Rule = PROMPTER_REPLY
    client: Rule = CLIENT
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    RULES = ("user_tasks", "assistant_reply", "prompter_reply", "client")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RateLimits:
        environ = os.environ if environ is None else environ
        raw = environ.get(ENV, "true").strip().lower()
        if raw not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ConfigError(f"{ENV} must be true or false, not {raw!r}")
        rules: dict[str, Any] = {}
        for name in cls.RULES:
            key = f"{ENV}_{name.upper()}"
            if environ.get(key):
                rules[name] = Rule.parse(environ[key], key)
        return cls(enabled=raw in ("1", "true", "yes", "on"), **rules)


class SlidingWindowLimiter:
    """At most ``rule.times`` admissions per key in any window of ``rule.seconds``.

    Each key keeps the times of its admissions inside the window (so at most ``times``
    of them); a lock makes check-and-record one step for the threadpool's threads."""

    SWEEP_EVERY = 4096  # admissions between sweeps of keys whose window has emptied

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._log: dict[Hashable, tuple[float, deque[float]]] = {}
        self._lock = threading.Lock()
        self._admitted = 0

    def admit(self, checks: Sequence[tuple[Hashable, Rule]]) -> float:
        """Record one request under every (key, rule) and return 0, or, when any rule is
        exhausted, record nothing and return the seconds until all would admit it."""
        with self._lock:
            now = self.clock()
            wait = 0.0
            for key, rule in checks:
                entry = self._log.get(key)
                if entry is None:
                    continue
                times = entry[1]
                while times and times[0] <= now - rule.seconds:
                    times.popleft()
                if len(times) >= rule.times:
                    # the oldest admission that must leave the window before this one fits
                    wait = max(wait, times[len(times) - rule.times] + rule.seconds - now)
            if wait > 0:
                return wait
            for key, rule in checks:
                entry = self._log.get(key)
                if entry is None:
                    entry = self._log[key] = (rule.seconds, deque())
                entry[1].append(now)
            self._admitted += 1
            if self._admitted % self.SWEEP_EVERY == 0:
                self._sweep(now)
            return 0.0

    def _sweep(self, now: float) -> None:
        stale = [
            k
            for k, (seconds, times) in self._log.items()
            if not times or times[-1] <= now - seconds
        ]
        for key in stale:
            del self._log[key]

    def __len__(self) -> int:
        return len(self._log)


def too_many_requests(wait: float) -> HttpError:
    seconds = max(1, math.ceil(wait))
    return HttpError(
        f"Too Many Requests. Retry After {seconds} seconds.",
        ErrorCode.TOO_MANY_REQUESTS,
        429,
        headers={"Retry-After": str(seconds)},
    )


class TaskRequestLimits:
    """The limits of ``POST /tasks/``: which rules a request is under, and their log."""

    def __init__(self, limits: RateLimits, limiter: Any = None):
        self.limits = limits
        # ``limiter``: a log shared by several server processes (api.storage.rate_log),
        # with the same ``admit``; by default this process's own memory
        self.limiter = limiter or SlidingWindowLimiter(limits.clock)

    def check(self, client_id: object, user: tuple[str, str] | None, task_type: str) -> None:
        """Admit the request or raise 429 (with Retry-After); ``user`` is (auth_method, id)."""
        limits = self.limits
        if not limits.enabled:
            return
        if user is None:
            checks = [(("client", client_id), limits.client)]
        else:
            who = (client_id, *user)
            checks = [(("user", who), limits.user_tasks)]
            if task_type == "assistant_reply":
                checks.append((("assistant_reply", who), limits.assistant_reply))
            elif task_type == "prompter_reply":
                checks.append((("prompter_reply", who), limits.prompter_reply))
        wait = self.limiter.admit(checks)
        if wait > 0:
            raise too_many_requests(wait)
