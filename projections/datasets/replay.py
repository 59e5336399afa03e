"""Trees as dataset rows see them, replayed straight from the stored event JSON.

A row holds a message's role, text, review outcome, deleted and synthetic flags and rank,
the tree's shape, state and language: nothing else. So instead of decoding every event
into its dataclass and building the full aggregate (reviews, labels, emojis, UUID
objects), this replays only the events that change one of those facts, decodes only the
fields they need (msgspec skips the others unparsed) and builds slim messages keyed by
id text. The ``apply`` functions mirror ``domain.model.tree``'s event ``apply`` methods field
for field; tests/test_datasets_live.py checks that both give the same rows for trees
that went through every kind of event.

A tree whose last state event does not make it ready is skipped before its other events
are decoded: in a live store most trees are not (yet) ready.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from uuid import UUID

import msgspec

from domain.model.catalogue import event_classes, topics_of
from domain.model.message import Role
from domain.model.states import TreeState
from domain.model.tree import ConversationTree

READY = TreeState.READY_FOR_EXPORT.value
_HALTED = TreeState.HALTED_BY_MODERATOR.value
_ROLES = {r.value: r for r in Role}


class RowMessage:
    """The facts of a message that dataset rows use (the names of domain.model.message.Message)."""

    __slots__ = (
        "id",
        "role",
        "text",
        "lang",
        "synthetic",
        "model_name",
        "review_result",
        "deleted",
        "rank",
        "children",
        "images",
    )

    def __init__(self, id: str, role: Role, text: str, lang: str, synthetic: bool):
        self.id = id
        self.role = role
        self.text = text
        self.lang = lang
        self.synthetic = synthetic
        self.model_name: str | None = None  # who wrote a synthetic reply (provenance counts)
        self.review_result: bool | None = None
        self.deleted = False
        self.rank: int | None = None
        self.children: list[str] = []
        self.images: list[str] = []  # sha256 of the images it carries (ImagesAttached)


class RowTree:
    """What TreeRows reads of a ConversationTree: id, state, messages, root."""

    __slots__ = ("id", "state", "messages", "origin")

    def __init__(self, id: UUID):
        self.id = id
        self.origin: str | None = None  # the import source's name; None: written here
        self.state = TreeState.INITIAL_PROMPT_REVIEW
        self.messages: dict[str, RowMessage] = {}

    @property
    def root(self) -> RowMessage:
        return self.messages[str(self.id)]


# ------------------------------------------------------------------ slim event views
class _Started(msgspec.Struct):
    text: str
    lang: str
    synthetic: bool
    state: str
    origin: str | None = None


class _Reply(msgspec.Struct):
    message_id: str
    parent_id: str
    role: str
    text: str
    lang: str
    synthetic: bool
    model_name: str | None = None


class _Review(msgspec.Struct):
    message_id: str
    accepted: bool


class _State(msgspec.Struct):
    to_state: str


class _Scored(msgspec.Struct):
    ranks: dict[str, list[str]]


class _Ids(msgspec.Struct):
    message_ids: list[str]


class _Edited(msgspec.Struct):
    message_id: str
    text: str


class _Image(msgspec.Struct):
    sha256: str


class _Attached(msgspec.Struct):
    message_id: str
    images: list[_Image]


Apply = Callable[[RowTree, Any], None]
# event class -> (the view its stored JSON decodes into, what it does to a RowTree)
_APPLY: dict[type, tuple[type, Apply]] = {}


def _applies(view: type, *classes: type) -> Callable[[Apply], Apply]:
    """Register the function as what these events do to a RowTree (read as ``view``)."""

    def register(apply: Apply) -> Apply:
        for cls in classes:
            _APPLY[cls] = (view, apply)
        return apply

    return register


@_applies(_Started, ConversationTree.TreeStarted)
def _started(tree: RowTree, e: _Started) -> None:
    root_id = str(tree.id)
    tree.messages = {root_id: RowMessage(root_id, Role.PROMPTER, e.text, e.lang, e.synthetic)}
    tree.state = TreeState(e.state)
    tree.origin = e.origin


@_applies(_Reply, ConversationTree.ReplyAdded)
def _reply(tree: RowTree, e: _Reply) -> None:
    message = RowMessage(e.message_id, _ROLES[e.role], e.text, e.lang, e.synthetic)
    message.model_name = e.model_name  # projections.datasets.votes counts rows per model
    tree.messages[e.message_id] = message
    tree.messages[e.parent_id].children.append(e.message_id)


@_applies(_Review, ConversationTree.ReviewDecided)
def _review(tree: RowTree, e: _Review) -> None:
    tree.messages[e.message_id].review_result = e.accepted


@_applies(_State, ConversationTree.StateChanged, ConversationTree.TreeResumed)
def _state(tree: RowTree, e: _State) -> None:
    tree.state = TreeState(e.to_state)


@_applies(_State, ConversationTree.TreeHalted)
def _halted(tree: RowTree, e: _State) -> None:
    tree.state = TreeState.HALTED_BY_MODERATOR


@_applies(_Scored, ConversationTree.TreeScored, ConversationTree.RanksImported)
def _scored(tree: RowTree, e: _Scored) -> None:
    for parent_id, order in e.ranks.items():
        position = {child_id: i for i, child_id in enumerate(order)}
        messages = tree.messages
        for child_id in messages[parent_id].children:
            messages[child_id].rank = position.get(child_id)


@_applies(_Ids, ConversationTree.MessageDeleted)
def _deleted(tree: RowTree, e: _Ids) -> None:
    for message_id in e.message_ids:
        tree.messages[message_id].deleted = True


@_applies(_Ids, ConversationTree.MessagesPurged)
def _purged(tree: RowTree, e: _Ids) -> None:
    for message_id in e.message_ids:
        message = tree.messages[message_id]
        message.deleted, message.text = True, ""


@_applies(_Ids, ConversationTree.MessageUndeleted)
def _undeleted(tree: RowTree, e: _Ids) -> None:
    for message_id in e.message_ids:
        tree.messages[message_id].deleted = False


@_applies(_Edited, ConversationTree.MessageEdited)
def _edited(tree: RowTree, e: _Edited) -> None:
    tree.messages[e.message_id].text = e.text


@_applies(_Attached, ConversationTree.ImagesAttached)
def _attached(tree: RowTree, e: _Attached) -> None:
    message = tree.messages[e.message_id]
    message.images = [*message.images, *(i.sha256 for i in e.images)]


# The tree events that change nothing a row holds (labels, individual rankings, emojis,
# scoring failures); tests/test_datasets_live.py checks that every tree event of the
# catalogue is either applied above or listed here.
NO_ROW_FACTS: tuple[type, ...] = (
    ConversationTree.LabelsSubmitted,
    ConversationTree.RankingSubmitted,
    ConversationTree.ScoringFailed,
    ConversationTree.EmojiToggled,
    ConversationTree.ReportsProcessed,
)
# topic (stored and current) -> (decode, apply).
APPLY: dict[str, tuple[Callable[[bytes], Any], Apply]] = {
    topic: (msgspec.json.Decoder(view).decode, apply)
    for cls, (view, apply) in _APPLY.items()
    for topic in topics_of(cls)
}
APPLIED: tuple[type, ...] = tuple(_APPLY)  # the event classes a RowTree takes
CONTENT_TOPICS: tuple[str, ...] = tuple(APPLY)
# The events that set a tree's state: its start and every kind of state change.
STATE_EVENTS: tuple[type, ...] = (
    ConversationTree.TreeStarted,
    *event_classes(ConversationTree, ConversationTree.StateChanged),
)
_STARTED_TOPICS = frozenset(topics_of(ConversationTree.TreeStarted))
STATE_TOPICS = frozenset(topics_of(*STATE_EVENTS))
_HALTED_TOPICS = frozenset(topics_of(ConversationTree.TreeHalted))


class _Start(msgspec.Struct):
    state: str
    lang: str


_decode_state = msgspec.json.Decoder(_State).decode
_decode_start = msgspec.json.Decoder(_Start).decode


def final_state(events: list[tuple[str, bytes]]) -> str | None:
    """The state the last state event leaves the tree in (None: no events)."""
    for topic, state in reversed(events):
        if topic in _STARTED_TOPICS:
            return _decode_start(state).state
        if topic in STATE_TOPICS:
            return _HALTED if topic in _HALTED_TOPICS else _decode_state(state).to_state
    return None


def replay(tree_id: UUID, events: Iterable[tuple[str, bytes]]) -> RowTree:
    """The tree from its content events (topic, stored JSON) in version order."""
    tree = RowTree(tree_id)
    for topic, state in events:
        decode, apply = APPLY[topic]
        apply(tree, decode(state))
    return tree


def tree_uuid(originator_id: Any) -> UUID:
    """An originator id as the store hands it out (UUID, or 32 hex digits in SQLite)."""
    return originator_id if isinstance(originator_id, UUID) else UUID(originator_id)


def ready_trees(
    rows: Iterable[tuple[Any, int, str, bytes]],
    *,
    lang: str | None = None,
    on_tree: Callable[[int], Any] | None = None,
) -> Iterator[RowTree]:
    """Ready trees from (originator_id, version, topic, state) rows of content topics,
    grouped by tree in version order; trees that are not ready (or, with ``lang``, whose
    prompt is in another language) are never fully decoded. ``on_tree(1)`` after each
    tree seen (a progress bar's update)."""
    for originator_id, group in itertools.groupby(rows, key=lambda row: row[0]):
        tree = _finish(originator_id, [(topic, state) for _, _, topic, state in group], lang)
        if on_tree is not None:
            on_tree(1)
        if tree is not None:
            yield tree


def _finish(
    originator_id: Any, events: list[tuple[str, bytes]], lang: str | None
) -> RowTree | None:
    if final_state(events) != READY:
        return None
    if lang is not None and _decode_start(events[0][1]).lang != lang:  # the root's language
        return None
    return replay(tree_uuid(originator_id), events)
