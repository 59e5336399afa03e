"""HTTP audit endpoints: GET /api/v1/audit/digest[?position=P] -> {"position", "digest"}.

Taking a digest extends the audit record (``<data>/audit.sqlite``) to the log's head first,
so the first call on a large, never-digested log hashes all of it (in the threadpool).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api.storage.logdb import Location, log_location
from domain.model.errors import ErrorCode
from projections.audit.record import (
    AUDIT_FILE,
    AuditStore,
    ChainBroken,
    digest_at,
    open_log,
    record,
)


def _json(data: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


def digest_endpoint(
    folder: Path, location: Location | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """The digest of the log at ``location`` (the server's; default: the folder's, named
    now, not at the first request), its audit record in ``folder``."""
    location = log_location(folder) if location is None else location
    opened: dict[str, Any] = {}
    lock = threading.Lock()

    def compute(position: int | None) -> tuple[int, bytes]:
        with lock:  # one connection pair per app, used by one request at a time
            if not opened:
                opened["log"] = open_log(location)
                opened["store"] = AuditStore(folder / AUDIT_FILE)
            if opened["log"] is None:  # the store did not exist when first asked
                opened["log"] = open_log(location)
            log, store = opened["log"], opened["store"]
            head, digest = record(log, store)[:2]
            if position is None:
                return head, digest
            return position, digest_at(log, store, position)

    async def digest(request: Request) -> Response:
        raw = request.query_params.get("position")
        try:
            position = int(raw) if raw is not None else None
        except ValueError:
            return _json(
                {
                    "message": f"position must be an integer, not {raw!r}",
                    "error_code": int(ErrorCode.VALIDATION_ERROR),
                },
                422,
            )
        try:
            found, value = await run_in_threadpool(compute, position)
        except ValueError as e:  # a position past the head
            return _json({"message": str(e), "error_code": int(ErrorCode.VALIDATION_ERROR)}, 422)
        except ChainBroken as e:  # the log changed under the record: refuse to bless it
            return _json({"message": str(e), "error_code": int(ErrorCode.GENERIC_ERROR)}, 409)
        return _json({"position": found, "digest": value.hex()})

    return digest
