"""Images on messages over HTTP: upload, fetch, and the URLs tasks carry.

``POST /api/v1/images`` takes one image as a raw body (its Content-Type anything) or as
a multipart form's ``file`` (``image`` also read); the bytes are sanitised and stored
(api.storage.uploads) and the answer is ``{image_id, sha256, width, height, media_type,
size}``. A text reply interaction (or ``POST /messages`` style writes) then names
``image_ids``; ``image_refs`` turns them into the ``ImageRef`` values the log records.

``GET /api/v1/messages/{message_id}/images/{image_id}`` serves an image of a message to
a client that may see the message: a trusted client, the client the message was written
through, or one holding a signed URL (an HMAC over message, image, client and expiry)
that the server put in a task it handed to that client. A deleted message's images are
not served to anyone (404, as for an unknown image, so nothing is revealed).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from starlette.formparsers import MultiPartParser
from starlette.responses import Response

from api.http.errors import HttpError
from api.http.routing import Api, Call
from api.http.service import Service
from api.storage.image_codec import ImageRefused
from api.storage.uploads import ImageUploads
from domain.model.errors import ErrorCode
from domain.model.images import ImageRef
from domain.model.tree import ConversationTree

MAX_UPLOAD_BYTES = 12 * 1024 * 1024  # the request; the image limit itself is ImageLimits
URL_LIFETIME_S = 24 * 3600
_uploads: dict[tuple[Path, str], ImageUploads] = {}


def uploads(service: Service) -> ImageUploads:
    """The data folder's image uploads (one per folder and log, shared by the web app): on
    the PostgreSQL store, in the log's schema, so every node of the store sees them."""
    key = (service.folder, str(service.log))
    found = _uploads.get(key)
    if found is None:
        found = _uploads.setdefault(key, ImageUploads(service.folder, location=service.log))
    return found


def _not_found(image_id: object) -> HttpError:
    return HttpError(f"image {image_id} not found", ErrorCode.IMAGE_NOT_FOUND, 404)


def refused(e: ImageRefused) -> HttpError:
    if e.too_large:
        return HttpError(str(e), ErrorCode.IMAGE_TOO_LARGE, 413)
    if e.unsupported:
        return HttpError(str(e), ErrorCode.IMAGE_UNSUPPORTED_TYPE, 415)
    return HttpError(str(e), ErrorCode.IMAGE_INVALID, 422)


# ---------------------------------------------------------------- upload
async def _file_part(call: Call) -> bytes:
    """The image bytes: the multipart ``file`` (or ``image``) part, else the raw body."""
    content_type = call.request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return call.body

    async def stream() -> AsyncGenerator[bytes, None]:
        yield call.body

    try:
        form = await MultiPartParser(call.request.headers, stream(), max_files=1).parse()
    except Exception as e:  # noqa: BLE001 - any parse failure is the client's malformed body
        raise HttpError(f"malformed multipart body: {e}", ErrorCode.IMAGE_INVALID, 422) from None
    part = form.get("file") or form.get("image")
    if part is None or isinstance(part, str):
        raise HttpError("the form has no file part 'file'", ErrorCode.IMAGE_INVALID, 422)
    data = await part.read()
    await part.close()
    return data


async def upload(call: Call) -> dict[str, Any]:
    raw = await _file_part(call)
    try:
        ticket = await call.blocking(uploads(call.service).upload, raw, call.api_client.id)
    except ImageRefused as e:
        raise refused(e) from None
    return {
        "image_id": ticket.id,
        "sha256": ticket.sha256,
        "width": ticket.width,
        "height": ticket.height,
        "media_type": ticket.media_type,
        "size": ticket.size,
    }


def image_refs(service: Service, client_id: UUID, image_ids: Sequence[UUID]) -> list[ImageRef]:
    """The uploads a new message names; another client's upload is not found (404)."""
    found: list[ImageRef] = []
    for image_id in image_ids:
        ticket = uploads(service).ticket(image_id)
        if ticket is None or ticket.client_id != str(client_id):
            raise _not_found(image_id)
        found.append(ticket.ref())
    return found


# ---------------------------------------------------------------- signed URLs
def _signature(key: bytes, message_id: UUID, image_id: UUID, client_id: UUID, exp: int) -> str:
    text = f"{message_id}|{image_id}|{client_id}|{exp}".encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()[:32]


def image_url(service: Service, client_id: UUID, message_id: UUID, image_id: UUID) -> str:
    """A URL the client can fetch the image with, valid for URL_LIFETIME_S."""
    exp = int(time.time()) + URL_LIFETIME_S
    sig = _signature(uploads(service).url_key(), message_id, image_id, client_id, exp)
    return f"/api/v1/messages/{message_id}/images/{image_id}?exp={exp}&sig={sig}"


def _signed(call: Call, message_id: UUID, image_id: UUID) -> bool:
    sig, exp = call.query("sig"), call.query("exp")
    if not sig or not exp or not exp.isdigit() or int(exp) < time.time():
        return False
    key = uploads(call.service).url_key()
    expected = _signature(key, message_id, image_id, call.api_client.id, int(exp))
    return hmac.compare_digest(sig, expected)


def message_images(
    service: Service, tree_id: UUID, message_ids: Sequence[UUID] | None = None
) -> dict[UUID, list[ImageRef]]:
    """The live (not deleted) messages of a tree that carry images, with their images."""

    def view(tree: ConversationTree) -> dict[UUID, list[ImageRef]]:
        wanted = tree.messages if message_ids is None else message_ids
        return {
            m.id: list(m.images)
            for m in (tree.messages.get(i) for i in wanted)
            if m is not None and m.images and not m.deleted
        }

    return service.app.view_tree(tree_id, view)


# ---------------------------------------------------------------- fetch
def _visible_image(call: Call, message_id: UUID, image_id: UUID) -> ImageRef:
    app = call.service.app
    try:
        tree_id = app.tree_of_message(message_id)
    except Exception:  # noqa: BLE001 - an unknown message reads as an unknown image
        raise _not_found(image_id) from None

    def view(tree: ConversationTree) -> tuple[UUID | None, ImageRef | None]:
        m = tree.messages.get(message_id)
        if m is None or m.deleted:
            return None, None
        return m.client_id, next((i for i in m.images if i.id == image_id), None)

    client_of_message, ref = app.view_tree(tree_id, view)
    client = call.api_client
    allowed = client.trusted or client_of_message == client.id
    if ref is None or not (allowed or _signed(call, message_id, image_id)):
        raise _not_found(image_id)
    return ref


def fetch(call: Call) -> Response:
    message_id = call.path_id("message_id", ErrorCode.MESSAGE_NOT_FOUND, "message")
    image_id = call.path_id("image_id", ErrorCode.IMAGE_NOT_FOUND, "image")
    ref = _visible_image(call, message_id, image_id)
    try:
        data = uploads(call.service).blobs.read(ref.sha256)
    except FileNotFoundError:
        raise _not_found(image_id) from None
    return Response(data, media_type=ref.media_type, headers=image_headers(ref))


def image_headers(ref: ImageRef) -> dict[str, str]:
    return {
        "Cache-Control": "private, max-age=3600",
        "ETag": f'"{ref.sha256}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'",
    }


def register(api: Api) -> None:
    api.add(
        "POST",
        "/api/v1/images",
        upload,
        status=201,
        max_body=MAX_UPLOAD_BYTES,
        summary="upload an image (raw body or multipart 'file'): PNG, JPEG or WebP",
        tag="images",
        errors={
            "413": "image too large (bytes, pixels, decompression bomb)",
            "415": "not a PNG, JPEG or WebP image",
            "422": "truncated or corrupt image",
        },
    )
    api.add(
        "GET",
        "/api/v1/messages/{message_id}/images/{image_id}",
        fetch,
        summary="an image of a message (trusted client, the message's client, or signed URL)",
        tag="images",
    )


# ---------------------------------------------------------------- task bodies
def add_image_urls(service: Service, client_id: UUID, tree_id: UUID | None, body: dict) -> None:
    """Give every message in a task body the images it carries, with URLs signed for the
    client the task goes to (a task's conversation is what that client may see)."""
    if tree_id is None:
        return
    found = message_images(service, tree_id)
    if not found:
        return
    messages = [*body.get("conversation", {}).get("messages", []), *body.get("reply_messages", [])]
    if body.get("reply_message"):
        messages.append(body["reply_message"])
    for message in messages:
        refs = found.get(UUID(str(message["id"]))) if message.get("id") else None
        message["images"] = [
            {
                "id": r.id,
                "sha256": r.sha256,
                "media_type": r.media_type,
                "width": r.width,
                "height": r.height,
                "size": r.size,
                "url": image_url(service, client_id, message["id"], r.id),
            }
            for r in refs or ()
        ]
