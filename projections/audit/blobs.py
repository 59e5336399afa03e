"""The images the log names, checked against the blob store (``audit verify --blobs``).

The log records an image only as ``ConversationTree.ImagesAttached`` with its sha256, so
the hash chain vouches for the hash and this check vouches for the bytes: every named
blob is re-hashed, and a missing or altered file is reported with the message and tree
that carry it. A blob named by several messages is hashed once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import msgspec

from api.storage.blobs import BlobStore
from domain.model.catalogue import topics_of
from domain.model.tree import ConversationTree
from projections.audit.record import scan

_TOPICS = frozenset(topics_of(ConversationTree.ImagesAttached))


class _Image(msgspec.Struct):
    id: UUID
    sha256: str


class _Attached(msgspec.Struct):
    message_id: UUID
    images: list[_Image]


_decode = msgspec.json.Decoder(_Attached).decode


@dataclass(frozen=True, slots=True)
class BlobDamage:
    sha256: str
    kind: str  # "missing" or "altered"
    image_id: str
    message_id: str
    tree_id: str
    position: int


@dataclass
class BlobReport:
    images: int = 0  # image references in the log
    blobs: int = 0  # distinct blobs re-hashed
    damage: list[BlobDamage] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.damage


def verify_blobs(
    log: Any, store: BlobStore, progress: Callable[[int], Any] | None = None
) -> BlobReport:
    """Re-hash every blob an ImagesAttached event names; report the damaged ones."""
    report = BlobReport()
    checked: dict[str, str] = {}
    for rows in scan(log, 0):
        for position, originator_id, _version, topic, state in rows:
            if topic not in _TOPICS:
                continue
            event = _decode(state)
            for image in event.images:
                report.images += 1
                if image.sha256 not in checked:
                    checked[image.sha256] = store.check(image.sha256)
                verdict = checked[image.sha256]
                if verdict != "ok":
                    tree = originator_id if isinstance(originator_id, str) else str(originator_id)
                    report.damage.append(
                        BlobDamage(
                            image.sha256,
                            verdict,
                            str(image.id),
                            str(event.message_id),
                            str(UUID(tree)),
                            position,
                        )
                    )
        if progress is not None:
            progress(len(rows))
    report.blobs = len(checked)
    return report
