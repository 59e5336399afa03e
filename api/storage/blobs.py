"""A content-addressed blob store: image bytes beside the log, named by their sha256.

Layout: ``<data>/blobs/sha256/<first two hex digits>/<64 hex digits>``. A blob is written
to a temporary file in its folder, flushed to disk and renamed into place, so a reader
never sees half a file and a crash leaves at most a stray ``.tmp``. Writing the same
bytes twice stores them once. The log names a blob only by its hash (an ``ImageRef``),
so ``check`` can tell a missing file from an altered one.

Extension point: another store (an S3-compatible bucket, say) implements ``BlobStore``:
``put`` returns the hex digest of what it stored under that name, ``read`` returns the
bytes or raises ``FileNotFoundError``, ``check`` re-hashes. Keys would be the same
``sha256/<hex>`` names (boto3's ``put_object(Key=..., ChecksumSHA256=...)`` checks the
upload server-side). Nothing else in the system touches the files directly.

Where the log is PostgreSQL (several nodes, each with its own data folder, on one log),
the blobs live in the log's schema instead (api.storage.pg_blobs): ``blob_store`` picks
the store from the log's location, so every node reads what any node stored.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Literal, Protocol

from api.storage.logdb import Location, log_location
from api.storage.pg_url import is_postgres

BLOBS_FOLDER = "blobs"
_HEX = re.compile(r"[0-9a-f]{64}")
Check = Literal["ok", "missing", "altered"]


class BlobStore(Protocol):
    def put(self, data: bytes) -> str: ...
    def read(self, sha256: str) -> bytes: ...
    def check(self, sha256: str) -> Check: ...


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def valid_digest(sha256: str) -> str:
    if not _HEX.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


class FileBlobStore:
    """Blobs as files under ``root`` (normally ``<data>/blobs``)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        valid_digest(sha256)
        return self.root / "sha256" / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        target = self.path(digest)
        if target.exists() and self.check(digest) == "ok":
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f"{digest}.{os.getpid()}.tmp")
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
        return digest

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def digests(self) -> list[str]:
        """The names of the stored blobs (a stray ``.tmp`` is none)."""
        folder = self.root / "sha256"
        found = folder.glob("*/*") if folder.is_dir() else ()
        return sorted(p.name for p in found if _HEX.fullmatch(p.name) and p.is_file())

    def check(self, sha256: str) -> Check:
        """Re-hash the stored file: ok, missing, or altered (its bytes hash otherwise)."""
        path = self.path(sha256)
        if not path.is_file():
            return "missing"
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return "ok" if digest.hexdigest() == sha256 else "altered"


def blob_store(data_folder: Path, location: Location | None = None) -> BlobStore:
    """The store beside a data folder's log (``location``: the log, when the caller has
    fixed it; else the configured store, as ``log_location`` finds it)."""
    where = log_location(data_folder) if location is None else location
    if is_postgres(where):
        from api.storage.pg_blobs import PostgresBlobStore  # psycopg: the postgres extra

        return PostgresBlobStore(str(where))
    return FileBlobStore(Path(data_folder) / BLOBS_FOLDER)
