"""The log's hash chain: canonical bytes of a stored event, and the links that chain them.

An auditor holding one pair (position P, digest D) can later prove that the first P events
of the log are byte for byte the ones D was computed from, however much was appended since.

Scheme ``sha256-chain/1``::

    link_0 = 32 zero bytes
    link_n = sha256(link_{n-1} || canonical(row_n))    rows in notification (rowid) order

``canonical(row)`` concatenates five fields, each encoded by its SQLite storage class, so
a value that changes type (an integer stored as text, a blob rewritten as text) changes
the bytes even where its printed form does not::

    fields:  position (the rowid), originator_id, originator_version, topic, state
    NULL     0x00
    INTEGER  0x01 || int64, big-endian, two's complement
    REAL     0x02 || IEEE-754 float64, big-endian
    TEXT     0x03 || uint32 length, big-endian || the UTF-8 bytes as stored
    BLOB     0x04 || uint32 length, big-endian || the bytes

The position is hashed too, so renumbering rows (moving an event to another position)
breaks the chain just like editing one. Hashing bytes is pure, hence it lives in the domain;
reading the rows and keeping checkpoints is ``projections.audit.record``'s job.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence

SCHEME = "sha256-chain/1"
GENESIS = bytes(32)

NULL, INTEGER, REAL, TEXT, BLOB = 0, 1, 2, 3, 4

_INT = struct.Struct(">Bq")
_REAL = struct.Struct(">Bd")
_VAR = struct.Struct(">BI")
# The usual row (int, text, int, text, blob) in three packs instead of five.
_HEAD = struct.Struct(">BqBI")  # position, then the originator id's tag and length
_sha256 = hashlib.sha256


class Text(bytes):
    """The bytes of a TEXT value exactly as SQLite stores them, undecoded.

    Readers get TEXT as ``str`` (the fast path: re-encoding valid UTF-8 gives back the
    stored bytes); a TEXT value that is not valid UTF-8 cannot become a ``str``, so a reader
    then switches to ``connection.text_factory = Text`` and hashes the raw bytes.
    """

    __slots__ = ()


def encode_value(value: object) -> bytes:
    """One field, tagged with its storage class (see the module docstring)."""
    if value is None:
        return b"\x00"
    if isinstance(value, int):
        return _INT.pack(INTEGER, int(value))
    if isinstance(value, float):
        return _REAL.pack(REAL, value)
    if isinstance(value, Text):
        return _VAR.pack(TEXT, len(value)) + value
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        return _VAR.pack(TEXT, len(data)) + data
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return _VAR.pack(BLOB, len(data)) + data
    raise TypeError(f"no canonical encoding for {type(value).__name__}")


def canonical(
    position: object, originator_id: object, version: object, topic: object, state: object
) -> bytes:
    """The canonical bytes of one stored event row."""
    if (
        type(originator_id) is str
        and type(topic) is str
        and type(state) is bytes
        and type(version) is int
        and type(position) is int
    ):
        oid, tp = originator_id.encode(), topic.encode()
        return b"".join(
            (
                _HEAD.pack(INTEGER, position, TEXT, len(oid)),
                oid,
                _INT.pack(INTEGER, version),
                _VAR.pack(TEXT, len(tp)),
                tp,
                _VAR.pack(BLOB, len(state)),
                state,
            )
        )
    return b"".join(map(encode_value, (position, originator_id, version, topic, state)))


def next_link(link: bytes, row_bytes: bytes) -> bytes:
    return _sha256(link + row_bytes).digest()


def fingerprint(row_bytes: bytes) -> bytes:
    """sha256 of one row alone: names the exact event that changed, independent of the chain."""
    return _sha256(row_bytes).digest()


Row = Sequence[object]  # (position, originator_id, version, topic, state)


def chain(rows: Iterable[Row], link: bytes = GENESIS) -> bytes:
    """The link after folding ``rows`` in order: ``canonical`` inlined for the usual row,
    since verification throughput is this loop (one join and one sha256 per row)."""
    sha, head, integer, var, join = _sha256, _HEAD.pack, _INT.pack, _VAR.pack, b"".join
    topics: dict[str, bytes] = {}
    for pos, oid, ver, topic, state in rows:
        if type(oid) is str and type(topic) is str and type(state) is bytes and type(ver) is int:
            tp = topics.get(topic)
            if tp is None:
                encoded = topic.encode()
                tp = topics[topic] = var(TEXT, len(encoded)) + encoded
            oid_bytes = oid.encode()
            link = sha(
                join(
                    (
                        link,
                        head(INTEGER, pos, TEXT, len(oid_bytes)),
                        oid_bytes,
                        integer(INTEGER, ver),
                        tp,
                        var(BLOB, len(state)),
                        state,
                    )
                )
            ).digest()
        else:
            link = sha(link + canonical(pos, oid, ver, topic, state)).digest()
    return link


def chain_with_fingerprints(
    rows: Iterable[Row], link: bytes = GENESIS
) -> tuple[bytes, list[bytes], list[bytes]]:
    """The final link, plus each row's fingerprint and the link after it."""
    fingerprints, links = [], []
    for row in rows:
        data = canonical(*row)
        link = _sha256(link + data).digest()
        fingerprints.append(_sha256(data).digest())
        links.append(link)
    return link, fingerprints, links


def parse_digest(text: str) -> bytes:
    """A digest as printed (64 hex digits); ValueError otherwise."""
    data = bytes.fromhex(text.strip())
    if len(data) != 32:
        raise ValueError("a digest is 64 hex digits (32 bytes)")
    return data
