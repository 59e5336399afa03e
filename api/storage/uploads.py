"""Uploaded images waiting to be named by a message: one small ticket file per upload.

``POST /api/v1/images`` sanitises the bytes (api.storage.image_codec), stores them in the
blob store and writes a ticket ``<data>/blobs/uploads/<image_id>.json`` saying what was
stored and which API client uploaded it. A prompt or reply naming ``image_ids`` turns
each ticket into an ``ImageRef`` for the log; only the uploading client may name it, so
an image id seen elsewhere cannot be re-attached by another client. An upload is not a
fact of the domain until a message carries it, so tickets are not events; a ticket never
named stays an orphan blob (harmless, and visible to nobody).

The module also keeps the HMAC key for signed image URLs (``url_key``), created once per
data folder with owner-only permissions.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from uuid import UUID, uuid4

from api.storage.blobs import FileBlobStore, blob_store
from api.storage.image_codec import ImageLimits, sanitize
from domain.model.images import ImageRef


@dataclass(frozen=True, slots=True)
class Ticket:
    id: str
    sha256: str
    media_type: str
    size: int
    width: int
    height: int
    client_id: str
    uploaded_at: float

    def ref(self) -> ImageRef:
        return ImageRef(
            id=UUID(self.id),
            sha256=self.sha256,
            media_type=self.media_type,
            size=self.size,
            width=self.width,
            height=self.height,
        )


class ImageUploads:
    """Sanitise, store, and remember who uploaded what."""

    def __init__(self, data_folder: Path, limits: ImageLimits | None = None):
        self.blobs: FileBlobStore = blob_store(data_folder)
        self.limits = limits or ImageLimits()
        self.tickets = self.blobs.root / "uploads"

    def upload(self, raw: bytes, client_id: UUID) -> Ticket:
        """Store a sanitised copy of ``raw``; ImageRefused (nothing stored) otherwise."""
        clean = sanitize(raw, self.limits)
        digest = self.blobs.put(clean.data)
        ticket = Ticket(
            id=str(uuid4()),
            sha256=digest,
            media_type=clean.media_type,
            size=len(clean.data),
            width=clean.width,
            height=clean.height,
            client_id=str(client_id),
            uploaded_at=time.time(),
        )
        self.tickets.mkdir(parents=True, exist_ok=True)
        path = self.tickets / f"{ticket.id}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(ticket)))
        os.replace(temporary, path)
        return ticket

    def ticket(self, image_id: UUID) -> Ticket | None:
        path = self.tickets / f"{image_id}.json"
        try:
            return Ticket(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def url_key(self) -> bytes:
        """The data folder's key for signed image URLs (made on first use)."""
        path = self.blobs.root / "url.key"
        try:
            return bytes.fromhex(path.read_text().strip())
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                return bytes.fromhex(path.read_text().strip())
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            return bytes.fromhex(path.read_text().strip())
