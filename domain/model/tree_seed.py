"""Open-Assistant's development seed data (``backend/test_data/*/..._seed_data.json``).

The file is a JSON list of flat messages ``{task_message_id, user_message_id,
parent_message_id|null, text, role: prompter|assistant, lang?, tree_state?}`` in
parent-before-child order; ``parent_message_id`` names the parent's ``user_message_id``
and ``tree_state`` (on roots only) is the state the tree starts in (default growing).
OA's loader stores every message as an accepted reply (``review_count=5,
review_result=true``) and skips its depth, children, tree-state and duplicate checks, so
its file holds trees ten deep and assistant replies to assistant messages. These are facts
of the file: ``plan_seed`` checks the file's own shape (the whole file, each problem named
by its index) and ``record_seed`` records what it says, running none of the tree rules.
Ids are derived from the importing client and ``user_message_id``: importing the file
again finds its trees and adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID, uuid5

from domain.model.actor import SYSTEM, Actor
from domain.model.config import TreeConfig
from domain.model.errors import InvalidMessageError
from domain.model.message import Role
from domain.model.states import TreeState, is_allowed
from domain.model.tree_import import _path

SEED_ORIGIN = "oa_seed"
SEED_REVIEW_COUNT = 5  # OA's loader: every seed message counts as reviewed five times


@dataclass(frozen=True, slots=True)
class SeedMessage:
    id: UUID
    parent_id: UUID | None
    role: Role
    depth: int
    text: str
    lang: str
    frontend_message_id: str  # the file's user_message_id, as OA stores it


@dataclass(frozen=True, slots=True)
class SeedTree:
    messages: list[SeedMessage]  # the root first, every parent before its replies
    state: TreeState

    @property
    def id(self) -> UUID:
        return self.messages[0].id


def seed_message_id(client_id: UUID, user_message_id: str) -> UUID:
    return uuid5(client_id, f"oa-seed/{user_message_id}")


def _field(item: dict[str, Any], name: str, where: str, optional: bool = False) -> Any:
    value = item.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidMessageError(f"{where}: {name} must be a non-empty string")
    return value


def plan_seed(items: Any, client_id: UUID) -> list[SeedTree]:
    """The file's trees, in file order; InvalidMessageError naming the first bad item."""
    if not isinstance(items, list):
        raise InvalidMessageError("the seed file must hold a JSON list of messages")
    trees: dict[UUID, list[SeedMessage]] = {}
    states: dict[UUID, TreeState] = {}
    seen: dict[str, tuple[UUID, SeedMessage]] = {}  # user_message_id -> (tree, message)
    for index, item in enumerate(items):
        where = f"item {index}"
        if not isinstance(item, dict):
            raise InvalidMessageError(f"{where}: not a JSON object")
        _field(item, "task_message_id", where)
        frontend_id = _field(item, "user_message_id", where)
        if frontend_id in seen:
            raise InvalidMessageError(f"{where}: user_message_id {frontend_id!r} appears twice")
        text = _field(item, "text", where)
        lang = _field(item, "lang", where, optional=True) or "en"
        try:
            role = Role(str(item.get("role")))
        except ValueError:
            raise InvalidMessageError(f"{where}: role must be prompter or assistant") from None
        parent_ref = item.get("parent_message_id")
        message_id = seed_message_id(client_id, frontend_id)
        if parent_ref is None:
            if role is not Role.PROMPTER:
                raise InvalidMessageError(f"{where}: a root message must be a prompter's")
            tree_id, depth = message_id, 0
            states[tree_id] = _state(item.get("tree_state"), where)
        else:
            if item.get("tree_state") is not None:
                raise InvalidMessageError(f"{where}: tree_state belongs on a root message only")
            if parent_ref not in seen:
                raise InvalidMessageError(
                    f"{where}: parent {parent_ref!r} does not come before it in the file"
                )
            tree_id, parent = seen[parent_ref]
            depth = parent.depth + 1
        message = SeedMessage(
            id=message_id,
            parent_id=None if parent_ref is None else seen[parent_ref][1].id,
            role=role,
            depth=depth,
            text=text,
            lang=lang,
            frontend_message_id=frontend_id,
        )
        seen[frontend_id] = (tree_id, message)
        trees.setdefault(tree_id, []).append(message)
    return [SeedTree(messages, states[tree_id]) for tree_id, messages in trees.items()]


def _state(raw: Any, where: str) -> TreeState:
    try:
        return TreeState(raw or TreeState.GROWING.value)
    except ValueError:
        raise InvalidMessageError(f"{where}: unknown tree_state {raw!r}") from None


class _Tree(Protocol):
    """What record_seed needs of the aggregate (domain.model.tree.ConversationTree)."""

    TreeStarted: Any
    ReplyAdded: Any
    ReviewDecided: Any

    def _record(self, event_class: Any, actor: Actor, **fields: Any) -> None: ...
    def change_state(self, to_state: TreeState, reason: str, actor: Actor) -> None: ...


def record_seed(cls: Any, seed: SeedTree, actor: Actor, config: TreeConfig) -> Any:
    """A ConversationTree (``cls``) holding the seed tree as the importer's messages, each
    accepted with OA's five reviews, moved to the file's state."""
    root, *replies = seed.messages
    start = seed.state if is_allowed(None, seed.state) else TreeState.INITIAL_PROMPT_REVIEW
    tree: _Tree = cls._create(
        cls.TreeStarted,
        id=root.id,
        user_id=actor.user_id,
        client_id=actor.client_id,
        text=root.text,
        lang=root.lang,
        frontend_message_id=root.frontend_message_id,
        synthetic=False,
        model_name=None,
        goal_tree_size=config.goal_tree_size,
        max_depth=config.max_tree_depth,
        max_children_count=config.max_children_count,
        origin=SEED_ORIGIN,
        state=start.value,
    )
    _accept(tree, root)
    for reply in replies:
        tree._record(
            cls.ReplyAdded,
            actor,
            message_id=reply.id,
            parent_id=reply.parent_id,
            role=reply.role.value,
            depth=reply.depth,
            text=reply.text,
            lang=reply.lang,
            frontend_message_id=reply.frontend_message_id,
            synthetic=False,
            model_name=None,
        )
        _accept(tree, reply)
    for step in _path(start, seed.state):
        tree.change_state(step, SEED_ORIGIN, SYSTEM)
    return tree


def _accept(tree: _Tree, message: SeedMessage) -> None:
    tree._record(
        tree.ReviewDecided,
        SYSTEM,
        message_id=message.id,
        accepted=True,
        score=1.0,
        review_count=SEED_REVIEW_COUNT,
    )
