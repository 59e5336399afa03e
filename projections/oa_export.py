"""Open-Assistant export: trees as ``ExportMessageTree`` JSON lines (reference §7).

Same defaults and quirks as OA's backend/export.py: ready_for_export trees only, accepted
non-deleted messages, no tree holding a synthetic message, replies sorted by rank with
unranked last, null fields left out, ``review_result`` null when false with at most two
reviews. Labels average every label row of a message (task reviews, free and report
labels). Input is a stream of trees; output is written one line at a time.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec

from domain.model.labels import TextLabel
from domain.model.message import Message
from domain.model.states import TreeState
from domain.model.tree import ConversationTree


class ExportImage(msgspec.Struct, kw_only=True):
    """An image a prompter message carries: its blob by hash (``path`` under the data folder)."""

    id: str
    sha256: str
    path: str
    media_type: str
    size: int
    width: int
    height: int


class ExportMessageNode(msgspec.Struct, kw_only=True, omit_defaults=True):
    message_id: str
    parent_id: str | None = None
    user_id: str | None = None
    created_date: str | None = None
    text: str
    role: str
    lang: str | None = None
    review_count: int
    review_result: bool | None = None
    deleted: bool
    rank: int | None = None
    synthetic: bool
    model_name: str | None = None
    emojis: dict[str, int] | None = None
    replies: list[ExportMessageNode] | None = None
    labels: dict[str, dict[str, float | int]] | None = None
    events: dict[str, list[dict[str, Any]]] | None = None
    images: list[ExportImage] | None = None  # ours: absent for a message without images
    message_tree_id: str | None = None
    tree_state: str | None = None


class ExportMessageTree(msgspec.Struct, kw_only=True, omit_defaults=True):
    message_tree_id: str
    tree_state: str
    prompt: ExportMessageNode
    origin: str | None = None


@dataclass(frozen=True)
class ExportOptions:
    state: str | None = TreeState.READY_FOR_EXPORT.value  # None: every state
    lang: str | None = None
    include_deleted: bool = False
    include_spam: bool = False
    include_synthetic: bool = False
    labels: bool = False
    events: bool = False
    anonymize_seed: str | None = None
    messages: bool = False  # flat ExportMessageNode lines instead of trees


class Anonymizer:
    """Seeded SHA-256 of "<collection>:<id>", shaped as a UUID so files stay importable.

    Tree ids use the "message" collection too, so a tree id still equals its root's id.
    """

    def __init__(self, seed: str):
        self.seed = seed.encode()

    def __call__(self, collection: str, value: UUID | None) -> str | None:
        if value is None:
            return None
        digest = hashlib.sha256(self.seed + f":{collection}:{value}".encode()).digest()
        return str(UUID(bytes=digest[:16]))


def _plain(collection: str, value: UUID | None) -> str | None:
    return None if value is None else str(value)


class TreeExporter:
    def __init__(self, options: ExportOptions, merged: Mapping[UUID, UUID] | None = None):
        """``merged``: merged user -> the user it went into (projections.user_merge)."""
        self.options = options
        self.ids = Anonymizer(options.anonymize_seed) if options.anonymize_seed else _plain
        self.merged = merged or {}

    def _user(self, user_id: UUID | None) -> str | None:
        """A user's id as exported: a merged user's rows are its destination's."""
        return self.ids("user", self.merged.get(user_id, user_id) if user_id else None)

    def _id(self, collection: str, value: UUID) -> str:
        """An id that is never missing (a tree's, a message's)."""
        found = self.ids(collection, value)
        assert found is not None
        return found

    def wanted(self, tree: ConversationTree) -> bool:
        o = self.options
        if o.state is not None and tree.state.value != o.state:
            return False
        if o.lang is not None and tree.root.lang != o.lang:
            return False
        if not o.include_synthetic and any(m.synthetic for m in tree.messages.values()):
            return False
        return self._keep(tree.root)

    def _keep(self, m: Message) -> bool:
        if m.deleted and not self.options.include_deleted:
            return False
        return self.options.include_spam or m.review_result is True

    def lines(self, trees: Iterable[ConversationTree]) -> Iterator[bytes]:
        """One encoded JSON line (with its newline) per exported tree or message."""
        encoder = msgspec.json.Encoder()
        for tree in trees:
            if not self.wanted(tree):
                continue
            if self.options.messages:
                for node in self.flat(tree):
                    yield encoder.encode(node) + b"\n"
            else:
                yield encoder.encode(self.tree(tree)) + b"\n"

    def tree(self, tree: ConversationTree) -> ExportMessageTree:
        return ExportMessageTree(
            message_tree_id=self._id("message", tree.id),
            tree_state=tree.state.value,
            prompt=self._node(tree, tree.root, nested=True),
            origin=tree.origin,
        )

    def flat(self, tree: ConversationTree) -> Iterator[ExportMessageNode]:
        """Depth-first pre-order, the row order OA's readers expect."""
        tree_id, state = self.ids("message", tree.id), tree.state.value
        stack = [tree.root]
        while stack:
            m = stack.pop()
            node = self._node(tree, m, nested=False)
            node.message_tree_id, node.tree_state = tree_id, state
            yield node
            stack.extend(reversed(self._children(tree, m)))

    def _children(self, tree: ConversationTree, m: Message) -> list[Message]:
        kept = [c for c in (tree.messages[i] for i in m.children) if self._keep(c)]
        # sorted() is stable: unranked replies keep their creation order, after the ranked.
        return sorted(kept, key=lambda c: (c.rank is None, c.rank or 0))

    def _node(self, tree: ConversationTree, m: Message, nested: bool) -> ExportMessageNode:
        review_result = m.review_result
        if review_result is False and m.review_count <= 2:
            review_result = None  # OA's tree_export.py does the same (hard-coded 2)
        node = ExportMessageNode(
            message_id=self._id("message", m.id),
            parent_id=self.ids("message", m.parent_id),
            user_id=self._user(m.user_id),
            created_date=m.created_at.isoformat() if m.created_at else None,
            text=m.text,
            role=m.role.value,
            lang=m.lang,
            review_count=m.review_count,
            review_result=review_result,
            deleted=m.deleted,
            rank=m.rank,
            synthetic=m.synthetic,
            model_name=m.model_name,
            emojis=m.emoji_counts() or None,
        )
        if m.images and not m.deleted:  # a deleted message's images are hidden everywhere
            node.images = [_image(i) for i in m.images]
        if nested:
            node.replies = [self._node(tree, c, True) for c in self._children(tree, m)]
        if self.options.labels:
            node.labels = aggregate_labels(m) or None
        if self.options.events:
            node.events = self._events(tree, m) or None
        return node

    def _events(self, tree: ConversationTree, m: Message) -> dict[str, list[dict[str, Any]]]:
        events: dict[str, list[dict[str, Any]]] = {}
        emoji = [
            {"user_id": self._user(u), "emoji": name}
            for name, users in sorted(m.emojis.items())
            for u in sorted(users, key=str)
        ]
        if emoji:
            events["emoji"] = emoji
        if m.rankings:
            # OA's `ranking` indexes the replies as the task listed them; we list them in
            # creation order, the order of the parent's children.
            index = {c: i for i, c in enumerate(m.children)}
            events["ranking"] = [
                {
                    "user_id": self._user(user),
                    "ranking": [index[i] for i in ids],
                    "ranked_message_ids": [self.ids("message", i) for i in ids],
                    "ranking_parent_id": self.ids("message", m.id),
                    "message_tree_id": self.ids("message", tree.id),
                    "not_rankable": not_rankable,
                }
                for user, ids, not_rankable in m.rankings
            ]
        return events


def _image(ref: Any) -> ExportImage:
    return ExportImage(
        id=str(ref.id),
        sha256=ref.sha256,
        path=f"blobs/sha256/{ref.sha256[:2]}/{ref.sha256}",
        media_type=ref.media_type,
        size=ref.size,
        width=ref.width,
        height=ref.height,
    )


def aggregate_labels(m: Message) -> dict[str, dict[str, float | int]]:
    """name -> {value: mean, count: rows holding it}, over every label row, in catalogue order."""
    rows = list(m.reviews.values()) + list(m.free_labels.values())
    out: dict[str, dict[str, float | int]] = {}
    for label in TextLabel:
        values = [row[label.value] for row in rows if label.value in row]
        if values:
            out[label.value] = {"value": math.fsum(values) / len(values), "count": len(values)}
    return out
