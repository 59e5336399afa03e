"""Image blobs and upload tickets in PostgreSQL, beside a shared log.

On the PostgreSQL store several server nodes, each with its own data folder, share one
log: an image uploaded through one node must be nameable by a prompt sent to another, be
readable there, and survive the loss of the node's disk once it is acknowledged. So the
blobs, the upload tickets and the key that signs image URLs live in tables of the log's
schema rather than under the data folder:

- ``dataengine_blobs (sha256 PRIMARY KEY, data bytea)``: content-addressed, written once
  per hash (a row whose bytes no longer hash to its name is rewritten by the next put of
  the right bytes, as a file is);
- ``dataengine_uploads``: one row per upload (api.storage.uploads' ``Ticket`` fields);
- ``dataengine_upload_keys``: the HMAC key, made by whichever node asks first, so a URL
  signed by one node is honoured by every other.

Each thread keeps its own autocommit connection (as api.storage.claim_log does): every
statement here is one row in and out, and a broken connection is replaced on next use.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from api.storage.blobs import Check, sha256_hex, valid_digest
from api.storage.pg_url import create_tables, split_url, thread_connection

BLOBS_TABLE = "dataengine_blobs"
UPLOADS_TABLE = "dataengine_uploads"
KEYS_TABLE = "dataengine_upload_keys"
TICKET_FIELDS = (
    "id",
    "sha256",
    "media_type",
    "size",
    "width",
    "height",
    "client_id",
    "uploaded_at",
)


class _Tables:
    """A schema's image tables and a connection per thread to reach them."""

    _made: set[str] = set()  # URLs whose tables this process has created
    _lock = threading.Lock()

    def __init__(self, url: str):
        self.libpq, self.schema = split_url(url)
        self.blobs = f'"{self.schema}".{BLOBS_TABLE}'
        self.uploads = f'"{self.schema}".{UPLOADS_TABLE}'
        self.keys = f'"{self.schema}".{KEYS_TABLE}'
        self._local = threading.local()
        with self._lock:
            if url not in self._made:
                self._create()
                self._made.add(url)

    def _create(self) -> None:
        import psycopg  # the postgres extra

        with psycopg.connect(self.libpq, autocommit=True, connect_timeout=5) as conn:
            create_tables(
                conn,
                self.schema,
                f"CREATE TABLE IF NOT EXISTS {self.blobs}"
                " (sha256 text PRIMARY KEY, data bytea NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS {self.uploads} (id text PRIMARY KEY,"
                " sha256 text NOT NULL, media_type text NOT NULL, size bigint NOT NULL,"
                " width integer NOT NULL, height integer NOT NULL, client_id text NOT NULL,"
                " uploaded_at float8 NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS {self.keys} (name text PRIMARY KEY, key text NOT NULL)",
            )

    def conn(self) -> Any:
        return thread_connection(self._local, self.libpq)


class PostgresBlobStore:
    """The ``BlobStore`` protocol on a table of the log's schema."""

    def __init__(self, url: str):
        self.url = url
        self.tables = _Tables(url)

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        # Idempotent by hash; a row altered behind our back is repaired, an intact one is
        # left as it is (no rewrite of the same bytes).
        self.tables.conn().execute(
            f"INSERT INTO {self.tables.blobs} AS b (sha256, data) VALUES (%s, %s)"
            " ON CONFLICT (sha256) DO UPDATE SET data = EXCLUDED.data"
            " WHERE encode(sha256(b.data), 'hex') <> b.sha256",
            (digest, data),
        )
        return digest

    def read(self, sha256: str) -> bytes:
        valid_digest(sha256)
        row = (
            self.tables.conn()
            .execute(f"SELECT data FROM {self.tables.blobs} WHERE sha256 = %s", (sha256,))
            .fetchone()
        )
        if row is None:
            raise FileNotFoundError(f"no blob {sha256} in {self.tables.blobs}")
        return bytes(row[0])

    def check(self, sha256: str) -> Check:
        """Re-hash the stored bytes (in the database, nothing is sent): ok, missing, altered."""
        valid_digest(sha256)
        row = (
            self.tables.conn()
            .execute(
                f"SELECT encode(sha256(data), 'hex') FROM {self.tables.blobs} WHERE sha256 = %s",
                (sha256,),
            )
            .fetchone()
        )
        if row is None:
            return "missing"
        return "ok" if row[0] == sha256 else "altered"


class PostgresTickets:
    """Upload tickets and the URL key, shared by every node of the store."""

    def __init__(self, url: str):
        self.tables = _Tables(url)
        self._key: bytes | None = None  # never changes once made: asked once per process

    def save(self, ticket: dict[str, Any]) -> None:
        columns = ", ".join(TICKET_FIELDS)
        marks = ", ".join(["%s"] * len(TICKET_FIELDS))
        # A ticket id is a fresh uuid4; the conflict is a copy run again (store copy).
        self.tables.conn().execute(
            f"INSERT INTO {self.tables.uploads} ({columns}) VALUES ({marks})"
            " ON CONFLICT (id) DO NOTHING",
            tuple(ticket[f] for f in TICKET_FIELDS),
        )

    def load(self, image_id: str) -> dict[str, Any] | None:
        row = (
            self.tables.conn()
            .execute(
                f"SELECT {', '.join(TICKET_FIELDS)} FROM {self.tables.uploads} WHERE id = %s",
                (image_id,),
            )
            .fetchone()
        )
        return None if row is None else dict(zip(TICKET_FIELDS, row, strict=True))

    def url_key(self) -> bytes:
        if self._key is not None:
            return self._key
        # The first node to ask makes the key; a concurrent second one keeps the first's.
        self._key = self.adopt_key(secrets.token_bytes(32))
        return self._key

    def adopt_key(self, key: bytes) -> bytes:
        """The store's URL key: ``key`` where it has none yet (a data folder's key, moved by
        store copy, keeps the URLs it signed valid), else the one it has."""
        conn = self.tables.conn()
        conn.execute(
            f"INSERT INTO {self.tables.keys} (name, key) VALUES ('url', %s)"
            " ON CONFLICT (name) DO NOTHING",
            (key.hex(),),
        )
        row = conn.execute(f"SELECT key FROM {self.tables.keys} WHERE name = 'url'").fetchone()
        return bytes.fromhex(row[0])
