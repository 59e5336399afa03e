"""Read-your-writes across server processes: the ``X-Log-Position`` header.

Every answer carries the log position it reflects: after a write (any method but GET and
HEAD), the position its commands recorded (known to the API's endpoints: no query), or
else the log's head once the write has committed, so it includes the write; after a
read, the position the process's read models hold. A request that sends the header back
(the highest value the client has seen) is answered only once this process's read models
hold that position, waiting for them (bounded by the service's catch-up timeout, as after
a command). So a client's next request, on whichever process or node the balancer picks,
sees its last write. A pure ASGI middleware: one header lookup per request, no
middleware-chain cost beyond it.
"""

from __future__ import annotations

from typing import Any

HEADER = b"x-log-position"
# Set by the API's endpoints (api.http.routing) in the request's scope: the log position
# their commands recorded, which the answer already waited for.
RECORDED = "dataengine.recorded"
_READS = ("GET", "HEAD")


class LogPositionMiddleware:
    def __init__(self, app: Any, service: Any):
        self.app, self.service = app, service

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = self.service
        wanted = _wanted(scope)
        if wanted is not None:
            await service.catch_up_async(wanted)
        write = scope["method"] not in _READS

        async def send_with_position(message: Any) -> None:
            if message["type"] == "http.response.start" and service.runner is not None:
                position = service.runner.position
                recorded = scope.get(RECORDED)
                if recorded is not None:  # what the write recorded: no query for the head
                    position = max(position, recorded)
                elif write and message["status"] < 500:
                    position = await service.head_async()  # includes the write
                headers = list(message.get("headers", ()))
                headers.append((HEADER, str(position).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_position)


def _wanted(scope: Any) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            try:
                position = int(value)
            except ValueError:
                return None  # not ours to refuse: the request is served as without it
            return position if position > 0 else None
    return None
