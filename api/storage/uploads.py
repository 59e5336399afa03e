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

On the PostgreSQL store the tickets and the key are rows of the log's schema, as the blobs
are (api.storage.pg_blobs): an upload acknowledged by one node can be named through, and
its signed URL read from, any other node of the store.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID, uuid4

from api.storage.blobs import BLOBS_FOLDER, BlobStore, FileBlobStore, blob_store, sha256_hex
from api.storage.image_codec import ImageLimits, sanitize
from api.storage.logdb import Location, log_location
from api.storage.pg_url import is_postgres
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


class Tickets(Protocol):
    def save(self, ticket: dict[str, Any]) -> None: ...
    def load(self, image_id: str) -> dict[str, Any] | None: ...
    def url_key(self) -> bytes: ...


class FileTickets:
    """Tickets as ``<root>/uploads/<image_id>.json``, the key as ``<root>/url.key``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.folder = self.root / "uploads"

    def save(self, ticket: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{ticket['id']}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(ticket))
        os.replace(temporary, path)

    def load(self, image_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder / f"{image_id}.json").read_text())
        except FileNotFoundError:
            return None

    def url_key(self) -> bytes:
        path = self.root / "url.key"
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


class ImageUploads:
    """Sanitise, store, and remember who uploaded what."""

    def __init__(
        self,
        data_folder: Path,
        limits: ImageLimits | None = None,
        location: Location | None = None,
    ):
        # ``location``: the log, where the caller has fixed it (a server's ``service.log``).
        where = log_location(data_folder) if location is None else location
        self.blobs: BlobStore = blob_store(data_folder, where)
        self.limits = limits or ImageLimits()
        self.tickets: Tickets
        if is_postgres(where):
            from api.storage.pg_blobs import PostgresTickets  # psycopg: the postgres extra

            self.tickets = PostgresTickets(str(where))
        else:
            self.tickets = FileTickets(Path(data_folder) / BLOBS_FOLDER)

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
        self.tickets.save(asdict(ticket))
        return ticket

    def ticket(self, image_id: UUID) -> Ticket | None:
        found = self.tickets.load(str(image_id))
        return None if found is None else Ticket(**found)

    def url_key(self) -> bytes:
        """The key for signed image URLs (made on first use)."""
        return self.tickets.url_key()


def copy_images(folder: Path, url: str) -> tuple[int, int, list[str]]:
    """A data folder's images (blobs, tickets, URL key) into a PostgreSQL store, for
    ``dataengine store copy``: (blobs copied, tickets copied, altered blobs not copied).
    Running it again copies nothing twice."""
    from api.storage.pg_blobs import PostgresBlobStore, PostgresTickets

    files = FileBlobStore(Path(folder) / BLOBS_FOLDER)
    if not files.root.is_dir():
        return 0, 0, []  # a folder that never stored an image
    source, blobs, tickets = FileTickets(files.root), PostgresBlobStore(url), PostgresTickets(url)
    copied, altered = 0, []
    for digest in files.digests():
        data = files.read(digest)
        if sha256_hex(data) != digest:  # stored under its true hash it would name nothing
            altered.append(digest)
            continue
        blobs.put(data)
        copied += 1
    names = sorted(source.folder.glob("*.json")) if source.folder.is_dir() else []
    for path in names:
        tickets.save(json.loads(path.read_text()))
    if (files.root / "url.key").is_file():
        tickets.adopt_key(source.url_key())
    return copied, len(names), altered
