"""Rebuilding a ConversationTree from an Open-Assistant export tree (``ExportMessageTree``).

The file records outcomes, not the facts that led to them: individual reviews, rankings
and emoji clicks are not in it. So the import records the outcomes themselves
(ReviewDecided with the file's review count, RanksImported, one EmojiToggled per counted
click by a stand-in user) and runs none of the follow-up rules: the file's verdicts are
the facts. Ids are kept, so importing a file twice finds the tree and adds nothing.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid5

from domain.model.actor import SYSTEM
from domain.model.config import TreeConfig
from domain.model.errors import InvalidMessageError
from domain.model.message import SYSTEM_EMOJIS, USER_EMOJIS, Role, check_text
from domain.model.states import ALLOWED_TRANSITIONS, TreeState, is_allowed

if TYPE_CHECKING:
    from domain.model.tree import ConversationTree

IMPORT_REASON = "imported"


def import_tree(
    cls: type[ConversationTree],
    export: dict[str, Any],
    *,
    config: TreeConfig,
    state: TreeState | str | None = None,
    origin: str | None = None,
) -> ConversationTree:
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
        _check_text(root["text"])
        tree = cls._create(
            cls.TreeStarted,
            id=tree_id,
            timestamp=_when(root),
            user_id=_uuid(root.get("user_id")),
            client_id=None,
            text=root["text"],
            lang=root.get("lang") or "en",
            frontend_message_id=None,
            synthetic=bool(root.get("synthetic")),
            model_name=root.get("model_name"),
            goal_tree_size=config.goal_tree_size,
            max_depth=config.max_tree_depth,
            max_children_count=config.max_children_count,
            origin=origin if origin is not None else export.get("origin"),
            state=start.value,
        )
        ranks: dict[str, list[UUID]] = {}
        _record_outcome(tree, root, tree_id)
        stack = [(root, tree_id)]
        while stack:
            node, node_id = stack.pop()
            ranked: list[tuple[int, UUID]] = []
            children = []
            for reply in node.get("replies") or ():
                reply_id = _uuid(reply["message_id"])
                _add_reply(tree, reply, reply_id, node_id, config)
                if reply.get("rank") is not None:
                    ranked.append((int(reply["rank"]), reply_id))
                children.append((reply, reply_id))
            if ranked:
                ranks[str(node_id)] = [i for _, i in sorted(ranked, key=lambda r: r[0])]
            stack.extend(reversed(children))
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidMessageError(f"not an export tree: {type(e).__name__}: {e}") from None
    if ranks and target is TreeState.READY_FOR_EXPORT:
        tree.trigger_event(cls.RanksImported, user_id=None, client_id=None, ranks=ranks)
    for step in _path(start, target):
        tree.change_state(step, IMPORT_REASON, SYSTEM)
    return tree


def _add_reply(
    tree: ConversationTree,
    reply: dict[str, Any],
    reply_id: UUID,
    parent_id: UUID,
    config: TreeConfig,
) -> None:
    if reply_id in tree.messages:
        raise InvalidMessageError(f"message {reply_id} appears twice")
    if reply.get("parent_id") not in (None, str(parent_id)):
        raise InvalidMessageError(f"message {reply_id} is nested under another parent")
    parent = tree.messages[parent_id]
    role = Role(reply["role"])
    if role is not parent.role.reply_role:
        raise InvalidMessageError(
            f"message {reply_id}: a {parent.role.value} takes "
            f"{parent.role.reply_role.value} replies"
        )
    _check_text(reply["text"])
    tree.trigger_event(
        tree.ReplyAdded,
        timestamp=_when(reply),
        user_id=_uuid(reply.get("user_id")),
        client_id=None,
        message_id=reply_id,
        parent_id=parent_id,
        role=role.value,
        depth=parent.depth + 1,
        text=reply["text"],
        lang=reply.get("lang") or tree.lang,
        frontend_message_id=None,
        synthetic=bool(reply.get("synthetic")),
        model_name=reply.get("model_name"),
    )
    _record_outcome(tree, reply, reply_id)


def _record_outcome(tree: ConversationTree, node: dict[str, Any], message_id: UUID) -> None:
    result = node.get("review_result")
    if result is not None:
        # The file has no score: a decided review counts as fully for or against.
        tree.trigger_event(
            tree.ReviewDecided,
            user_id=None,
            client_id=None,
            message_id=message_id,
            accepted=bool(result),
            score=1.0 if result else 0.0,
            review_count=int(node.get("review_count") or 0),
        )
    for emoji, count in (node.get("emojis") or {}).items():
        if emoji not in USER_EMOJIS and emoji not in SYSTEM_EMOJIS:
            raise InvalidMessageError(f"message {message_id}: unknown emoji {emoji!r}")
        for k in range(int(count)):
            # Stand-in clickers: deterministic, so a re-import names the same ones.
            tree.trigger_event(
                tree.EmojiToggled,
                user_id=uuid5(message_id, f"emoji/{emoji}/{k}"),
                client_id=None,
                message_id=message_id,
                emoji=emoji,
                added=True,
            )
    if node.get("deleted"):
        tree.trigger_event(
            tree.MessageDeleted,
            user_id=None,
            client_id=None,
            message_ids=[message_id],
            reason=IMPORT_REASON,
        )


def _path(start: TreeState, target: TreeState) -> list[TreeState]:
    """The shortest run of allowed moves from start to target (empty when equal)."""
    previous: dict[TreeState, TreeState | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        if current is target:
            path = []
            while previous[current] is not None:
                path.append(current)
                current = previous[current]  # type: ignore[assignment]
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
