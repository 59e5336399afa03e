"""Every failure as JSON ``{"message", "error_code"}`` with OA's code and HTTP status.

Domain rules raise DomainError subclasses (their code and status travel unchanged); the
HTTP layer adds the few errors only it can see (auth, malformed or oversized bodies,
unknown routes). A body is read with a size cap before anything parses it, so an
oversized request costs no decoding. Anything else that escapes a handler is a bug:
it is logged and answered 500 with error_code 0, never a stack trace.
"""

from __future__ import annotations

import logging
import re
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api.storage.space import disk_full
from api.storage.unreachable import store_unreachable
from domain.model.errors import DomainError, ErrorCode

log = logging.getLogger("dataengine.http")
S = TypeVar("S")

MAX_BODY_BYTES = 256 * 1024


class HttpError(DomainError):
    """An error the HTTP layer detects itself; code and status per instance."""

    def __init__(
        self,
        message: str,
        error_code: ErrorCode,
        http_status: int,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.error_code = error_code
        self.http_status = http_status
        self.headers = headers  # e.g. Retry-After on a 429


def not_authorized(message: str = "the API key is missing, unknown or disabled") -> HttpError:
    return HttpError(message, ErrorCode.API_CLIENT_NOT_AUTHORIZED, 403)


def root_not_authorized() -> HttpError:
    return HttpError("a valid root token is required", ErrorCode.ROOT_TOKEN_NOT_AUTHORIZED, 403)


def validation(message: str) -> HttpError:
    return HttpError(message, ErrorCode.VALIDATION_ERROR, 422)


def not_found(message: str, code: ErrorCode) -> HttpError:
    return HttpError(message, code, 404)


_encoder = msgspec.json.Encoder()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _encoder.encode(data), status_code=status, media_type="application/json", headers=headers
    )


def no_content() -> Response:
    return Response(status_code=204)


def error_response(error: DomainError) -> Response:
    body: dict[str, Any] = {"message": error.message, "error_code": int(error.error_code)}
    if error.http_status == 422:
        body["detail"] = validation_detail(error.message)
    return json_response(body, error.http_status, getattr(error, "headers", None))


def validation_detail(message: str) -> list[dict[str, Any]]:
    """FastAPI's 422 ``detail`` list, which OA's clients read: one entry naming where the
    problem is (a query parameter when the message names one, else the body)."""
    loc: list[str] = ["body"]
    if message.startswith("query parameter "):
        loc = ["query", message.split()[2]]
    return [{"loc": loc, "msg": message, "type": "value_error"}]


def internal_error(exc: BaseException) -> Response:
    if disk_full(exc):  # nothing was committed (the transaction rolled back): say so, not 500
        log.error("a write failed for lack of disk space: %s", exc)
        return json_response(
            {
                "message": "the server's storage is full; nothing was recorded, try again later",
                "error_code": int(ErrorCode.GENERIC_ERROR),
            },
            507,
        )
    if store_unreachable(exc):  # PostgreSQL down or restarting: the pools reconnect by themselves
        log.error("the event store is unreachable: %s", exc)
        message = "the event store is unreachable; try again shortly (retries are idempotent)"
        body = {"message": message, "error_code": int(ErrorCode.GENERIC_ERROR)}
        return json_response(body, 503, {"Retry-After": "1"})
    log.error("unhandled error", exc_info=exc)
    return json_response(
        {"message": "internal server error", "error_code": int(ErrorCode.GENERIC_ERROR)}, 500
    )


JSON = "application/json"
# an escaped NUL in a JSON string: an odd number of backslashes before u0000
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def unsupported_media_type(found: str) -> HttpError:
    return HttpError(
        f"the request body must be {JSON}, not {found or 'without a Content-Type'}",
        ErrorCode.VALIDATION_ERROR,
        415,
    )


def require_json(request: Request, body: bytes) -> None:
    """A JSON endpoint takes ``application/json`` bodies only (415 otherwise): a form or
    text body posted by a browser page on another site must not pass as a command."""
    if not body:
        return  # nothing to misread; decode() says the body is required
    found = request.headers.get("content-type", "")
    if found.split(";", 1)[0].strip().lower() != JSON:
        raise unsupported_media_type(found)


def refuse_nul(request: Request) -> None:
    """NUL is refused everywhere (domain.model.input_rules): in the path and the query too."""
    if "\x00" in request.url.path or b"%00" in request.scope.get("query_string", b""):
        raise validation("the request's path or query contains a NUL character")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused (413) once it passes ``limit`` bytes, before any parsing."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise validation("Content-Length is not a number") from None
        if too_big:
            raise HttpError(
                f"the request body is larger than {limit} bytes", ErrorCode.VALIDATION_ERROR, 413
            )
    chunks, size = [], 0
    async for chunk in request.stream():  # a chunked body has no Content-Length to trust
        size += len(chunk)
        if size > limit:
            raise HttpError(
                f"the request body is larger than {limit} bytes", ErrorCode.VALIDATION_ERROR, 413
            )
        chunks.append(chunk)
    return b"".join(chunks)


def decode(body: bytes, schema: type[S], *, strict: bool = True) -> S:
    """Decode and validate a JSON body; 422 naming the offending field on failure.

    ``strict=False`` lets OA clients send numbers as strings (the text front end sends
    label values as "1"/"0"), as FastAPI's coercion did.
    """
    if not body.strip():
        raise validation("a JSON request body is required")
    try:
        decoded = msgspec.json.decode(body, type=schema, strict=strict)
    except msgspec.ValidationError as e:
        raise validation(f"invalid request body: {e}") from None
    except msgspec.DecodeError as e:
        raise validation(f"malformed JSON body: {e}") from None
    # NUL is refused in every field (domain.model.input_rules); the substring test first:
    # the regex alone costs ~25 us a body, the test well under one
    if b"\\u0000" in body and _ESCAPED_NUL.search(body):
        raise validation("the request body contains a NUL character (\\u0000)")
    return decoded
