"""Reading an Open-Assistant export tree (``ExportMessageTree``) into an import plan.

The file records outcomes, not the facts that led to them: individual reviews, rankings
and emoji clicks are not in it. So an import records the outcomes themselves
(ReviewDecided with the file's review count, RanksImported, one EmojiToggled per counted
click by a stand-in user) and runs none of the follow-up rules: the file's verdicts are
the facts. This module only reads and checks the file and says what to record, in order;
``ConversationTree.import_tree`` records it. Ids are kept, so importing a file twice
finds the tree and adds nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

from domain.model.errors import InvalidMessageError
from domain.model.images import ImageRef, imported_images
from domain.model.message import SYSTEM_EMOJIS, USER_EMOJIS, Role, check_text
from domain.model.states import ALLOWED_TRANSITIONS, TreeState, is_allowed

IMPORT_REASON = "imported"


@dataclass(frozen=True, slots=True)
class ImportedMessage:
    """One message of the file and the outcomes recorded for it."""

    id: UUID
    parent_id: UUID | None
    role: Role
    depth: int
    text: str
    lang: str
    user_id: UUID | None
    synthetic: bool
    model_name: str | None
    created_at: datetime | None  # None: the event is stamped now
    review: tuple[bool, int] | None  # (accepted, review count) when decided
    # (emoji, stand-in clicker) per counted click: deterministic, so a re-import names the
    # same clickers.
    clicks: list[tuple[str, UUID]] = field(default_factory=list)
    deleted: bool = False
    images: list[ImageRef] = field(default_factory=list)  # the node's images (by hash)


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What to record: the messages in order (the root first, every parent before its
    replies), the state to start in, the ranks and the state moves after them."""

    messages: list[ImportedMessage]
    origin: str | None
    start: TreeState
    ranks: dict[str, list[UUID]]
    moves: list[TreeState]


def plan_import(
    export: dict[str, Any], *, state: TreeState | str | None = None, origin: str | None = None
) -> ImportPlan:
    try:
        root = export["prompt"]
        target = TreeState(state or export.get("tree_state") or TreeState.READY_FOR_EXPORT)
        tree_id = _uuid(root["message_id"])
        if tree_id is None:
            raise InvalidMessageError("the root message has no message_id")
        if export.get("message_tree_id") not in (None, str(tree_id)):
            raise InvalidMessageError(f"tree {export['message_tree_id']} is not rooted at its id")
        if Role(root.get("role", "prompter")) is not Role.PROMPTER:
            raise InvalidMessageError(f"root message {tree_id} is not a prompter message")
        start = target if is_allowed(None, target) else TreeState.INITIAL_PROMPT_REVIEW
        first = _message(root, tree_id, None, Role.PROMPTER, 0, "en")
        messages, ranks = _walk(root, first)
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidMessageError(f"not an export tree: {type(e).__name__}: {e}") from None
    return ImportPlan(
        messages=messages,
        origin=origin if origin is not None else export.get("origin"),
        start=start,
        ranks=ranks if target is TreeState.READY_FOR_EXPORT else {},
        moves=_path(start, target),
    )


def _walk(
    root: dict[str, Any], first: ImportedMessage
) -> tuple[list[ImportedMessage], dict[str, list[UUID]]]:
    """Every message, a node's replies together when the node is visited (depth first)."""
    messages = {first.id: first}
    ranks: dict[str, list[UUID]] = {}
    stack = [(root, first)]
    while stack:
        node, parent = stack.pop()
        ranked: list[tuple[int, UUID]] = []
        children = []
        for reply in node.get("replies") or ():
            reply_id = _uuid(reply["message_id"])
            if reply_id is None:
                raise InvalidMessageError(f"a reply to message {parent.id} has no message_id")
            if reply_id in messages:
                raise InvalidMessageError(f"message {reply_id} appears twice")
            if reply.get("parent_id") not in (None, str(parent.id)):
                raise InvalidMessageError(f"message {reply_id} is nested under another parent")
            role = Role(reply["role"])
            if role is not parent.role.reply_role:
                raise InvalidMessageError(
                    f"message {reply_id}: a {parent.role.value} takes "
                    f"{parent.role.reply_role.value} replies"
                )
            message = _message(reply, reply_id, parent.id, role, parent.depth + 1, first.lang)
            messages[reply_id] = message
            if reply.get("rank") is not None:
                ranked.append((int(reply["rank"]), reply_id))
            children.append((reply, message))
        if ranked:
            ranks[str(parent.id)] = [i for _, i in sorted(ranked, key=lambda r: r[0])]
        stack.extend(reversed(children))
    return list(messages.values()), ranks


def _message(
    node: dict[str, Any],
    message_id: UUID,
    parent_id: UUID | None,
    role: Role,
    depth: int,
    tree_lang: str,
) -> ImportedMessage:
    _check_text(node["text"])
    result = node.get("review_result")
    clicks = []
    for emoji, count in (node.get("emojis") or {}).items():
        if emoji not in USER_EMOJIS and emoji not in SYSTEM_EMOJIS:
            raise InvalidMessageError(f"message {message_id}: unknown emoji {emoji!r}")
        clicks += [(emoji, uuid5(message_id, f"emoji/{emoji}/{k}")) for k in range(int(count))]
    return ImportedMessage(
        id=message_id,
        parent_id=parent_id,
        role=role,
        depth=depth,
        text=node["text"],
        lang=node.get("lang") or tree_lang,
        user_id=_uuid(node.get("user_id")),
        synthetic=bool(node.get("synthetic")),
        model_name=node.get("model_name"),
        created_at=_when(node),
        review=None if result is None else (bool(result), int(node.get("review_count") or 0)),
        clicks=clicks,
        deleted=bool(node.get("deleted")),
        images=imported_images(message_id, role, node.get("images")),
    )


def _path(start: TreeState, target: TreeState) -> list[TreeState]:
    """The shortest run of allowed moves from start to target (empty when equal)."""
    previous: dict[TreeState, TreeState | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        if current is target:
            path = []
            step: TreeState | None = current
            while step is not None and previous[step] is not None:
                path.append(step)
                step = previous[step]
            return path[::-1]
        for a, b in sorted(ALLOWED_TRANSITIONS):
            if a is current and b not in previous:
                previous[b] = current
                queue.append(b)
    raise InvalidMessageError(f"no way to import a tree into state {target.value}")


def _check_text(text: Any) -> None:
    """Non-empty text; OA's own data holds texts longer than today's limit, and they are facts."""
    if not isinstance(text, str):
        raise InvalidMessageError("message text is not a string")
    check_text(text, max(len(text), 1))


def _uuid(value: Any) -> UUID | None:
    if value is None:
        return None
    return value if isinstance(value, UUID) else UUID(str(value))


def _when(node: dict[str, Any]) -> datetime | None:
    """The message's creation date as the event time (None: now)."""
    value = node.get("created_date")
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
