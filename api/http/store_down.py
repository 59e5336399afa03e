"""While the PostgreSQL store is unreachable, answer 503 at once.

A request that reaches the store while it is down waits through eventsourcing's retries
(10 attempts, each up to the pool's connect timeout: about 50 s) before it fails. Once a
lost connection has been seen (api.storage.unreachable: by a request, the projection
runner or the process loop), each request first asks whether the store answers again (one
connection attempt, at most one a second for the whole process, with a 1 s timeout; the
answer is reused meanwhile): while it does not, the request is answered 503 with a clear
message and Retry-After, recording nothing. The first successful probe lets requests
through again; the pools reconnect by themselves.
"""

from __future__ import annotations

import time
from typing import Any

from api.storage import unreachable
from api.storage.pg_url import split_url

PROBE_EVERY = 1.0  # seconds between connection attempts while the store is down
WATCH = 60.0  # after a lost connection, how long requests check the store first
BODY = b'{"message":"the event store is unreachable; try again shortly","error_code":0}'


class StoreDownMiddleware:
    def __init__(self, app: Any, url: str):
        self.app = app
        self.libpq = split_url(url)[0]
        self._checked = 0.0
        self._up = True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and unreachable.seen_within(WATCH) and not await self._up_now():
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"retry-after", b"1"),
                        (b"content-length", str(len(BODY)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": BODY})
            return
        await self.app(scope, receive, send)

    async def _up_now(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= PROBE_EVERY:
            self._checked = now  # set first: concurrent requests reuse the last answer
            import psycopg

            try:
                # the server accepting a session is the answer: nothing is queried
                conn = await psycopg.AsyncConnection.connect(
                    self.libpq, connect_timeout=1, autocommit=True
                )
                await conn.close()
                self._up = True
                unreachable.clear()
            except psycopg.Error:
                self._up = False
        return self._up
