"""Images on messages: what the log records about one, and the rules for attaching them.

The bytes never enter the log. An image is uploaded first (api.storage.images decodes
and re-encodes it, api.storage.blobs keeps it content-addressed); a prompt or prompter
reply then names it, and the tree records ``ConversationTree.ImagesAttached`` with one
``ImageRef`` per image: its id, the sha256 of the stored bytes, media type, size and
dimensions. The audit chain covers the image through that hash (``audit verify --blobs``
re-hashes the files).

Only prompter messages carry images (a prompt or a prompter reply, as the product asks
people and models about an image); at most ``TreeConfig.max_images_per_message`` each.
Mixed into the aggregate (domain.model.tree), which defines the event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar
from uuid import UUID, uuid5

from domain.model.actor import Actor
from domain.model.errors import InvalidImageError
from domain.model.message import Message, Role
from domain.model.tree_follow_ups import TreeFollowUps

if TYPE_CHECKING:
    from domain.model.tree import ConversationTree as Tree

MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One stored image as the log names it (never its bytes)."""

    id: UUID
    sha256: str
    media_type: str
    size: int
    width: int
    height: int


def check_images(message: Message, images: Sequence[ImageRef], limit: int) -> None:
    """Refuse images on anything but a live prompter message, too many, or malformed refs."""
    if message.role is not Role.PROMPTER:
        raise InvalidImageError("only a prompt or a prompter reply may carry images")
    if message.deleted:
        raise InvalidImageError(f"message {message.id} is deleted")
    total = len(message.images) + len(images)
    if not images or total > limit:
        raise InvalidImageError(f"a message carries 1..{limit} images, not {total}")
    ids = [i.id for i in (*message.images, *images)]
    if len(set(ids)) != len(ids):
        raise InvalidImageError("an image is attached to a message once")
    for image in images:
        if not well_formed(image):
            raise InvalidImageError(f"malformed image reference {image.id}")


def well_formed(image: ImageRef) -> bool:
    return (
        image.media_type in MEDIA_TYPES
        and len(image.sha256) == 64
        and all(c in "0123456789abcdef" for c in image.sha256)
        and min(image.size, image.width, image.height) > 0
    )


class TreeImages(TreeFollowUps):
    if TYPE_CHECKING:
        ImagesAttached: ClassVar[type[Tree.ImagesAttached]]

    def attach_images(
        self, *, message_id: UUID, images: Sequence[ImageRef], actor: Actor, limit: int
    ) -> None:
        message = self.message(message_id)
        check_images(message, images, limit)
        self._record(self.ImagesAttached, actor, message_id=message.id, images=list(images))


def imported_images(message_id: UUID, role: Role, raw: object) -> list[ImageRef]:
    """The ``images`` of an exported node (projections.oa_export writes them): one dict per
    image with sha256, media_type, size, width, height and optionally its id (else one is
    derived from the message and hash, so a re-import names the same image)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(i, dict) for i in raw):
        raise InvalidImageError(f"message {message_id}: images must be a list of objects")
    if raw and role is not Role.PROMPTER:
        raise InvalidImageError(f"message {message_id}: only prompter messages carry images")
    found = []
    for item in raw:
        try:
            ref = ImageRef(
                id=UUID(str(item["id"])) if item.get("id") else uuid5(message_id, item["sha256"]),
                sha256=str(item["sha256"]),
                media_type=str(item["media_type"]),
                size=int(item["size"]),
                width=int(item["width"]),
                height=int(item["height"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidImageError(
                f"message {message_id}: malformed image {item!r}: {e}"
            ) from None
        if not well_formed(ref):
            raise InvalidImageError(f"message {message_id}: malformed image {item!r}")
        found.append(ref)
    return found
