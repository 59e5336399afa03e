"""Signed checkpoints: an operator publishes (position, digest, signature) and an auditor
holding the public key can hold the store to them.

The key is an ed25519 key (the ``cryptography`` package) kept in
``<data>/audit_signing.key`` (PKCS#8 PEM, owner-only permissions), created by
``dataengine audit keygen``; the public key is printed as 64 hex digits and kept beside
it in ``audit_signing.pub``. What is signed names the scheme, the position and the digest,
so a signature can never be replayed for another position or another chain.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from projections.audit.chain import SCHEME

KEY_FILE = "audit_signing.key"
PUBLIC_FILE = "audit_signing.pub"


def message(position: int, digest: bytes) -> bytes:
    return f"dataengine-audit-checkpoint:{SCHEME}:{position}:{digest.hex()}".encode()


def public_hex(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """64 hex digits, or a file holding them (or a PEM public key); ValueError otherwise."""
    path = Path(text)
    if len(text) != 64 and path.is_file():
        text = path.read_text().strip()
    if text.startswith("-----BEGIN"):
        loaded = serialization.load_pem_public_key(text.encode())
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError("the PEM key is not an ed25519 public key")
        return loaded
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError("a public key is 64 hex digits (or a file holding them)") from None
    if len(raw) != 32:
        raise ValueError("a public key is 64 hex digits (32 bytes)")
    return Ed25519PublicKey.from_public_bytes(raw)


def keygen(folder: Path, *, force: bool = False) -> str:
    """Create the signing key in ``folder``; its public key (hex). An existing key is kept
    unless ``force`` (FileExistsError)."""
    path = folder / KEY_FILE
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to replace it")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = public_hex(key.public_key())
    (folder / PUBLIC_FILE).write_text(public + "\n")
    return public


def load_signer(folder: Path) -> Ed25519PrivateKey | None:
    """The folder's signing key, or None when it has none."""
    path = folder / KEY_FILE
    if not path.exists():
        return None
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an ed25519 private key")
    return key


class Signatures:
    """The ``signatures`` table of audit.sqlite: one row per signed checkpoint."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        with conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS signatures (position INTEGER PRIMARY KEY,"
                " digest BLOB NOT NULL, signature BLOB NOT NULL, public_key TEXT NOT NULL,"
                " signed_at TEXT)"
            )

    def sign(self, key: Ed25519PrivateKey, position: int, digest: bytes) -> bytes:
        signature = key.sign(message(position, digest))
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO signatures VALUES (?,?,?,?,?)",
                (
                    position,
                    digest,
                    signature,
                    public_hex(key.public_key()),
                    datetime.now(UTC).isoformat(),
                ),
            )
        return signature

    def rows(self) -> list[tuple[int, bytes, bytes]]:
        return self.conn.execute(
            "SELECT position, digest, signature FROM signatures ORDER BY position"
        ).fetchall()

    def latest(self) -> tuple[int, bytes, bytes] | None:
        row = self.conn.execute(
            "SELECT position, digest, signature FROM signatures ORDER BY position DESC LIMIT 1"
        ).fetchone()
        return (row[0], row[1], row[2]) if row else None


def check_signature(key: Ed25519PublicKey, position: int, digest: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, message(position, digest))
    except InvalidSignature:
        return False
    return True
