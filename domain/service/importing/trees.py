"""A Conversation as an Open-Assistant export tree, with ids derived from its source and content.

The tree is recorded by ``ConversationTree.import_tree`` like any OA export, so imported
rows are the same events as trees that people grew here. The root id is derived from the
source name, the row's content digest and how many identical rows came before it in the
file: the same data imports to the same trees whatever file format carried it, and a
re-import finds them. Message ids follow from the root id and the message's place
(``m/1``, ``m/2``, ... down the turns, then the replies), which is how an export finds the
imported messages of a tree that people have added to since.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from domain.model.data_import import NAMESPACE
from domain.model.states import TreeState
from domain.service.importing.formats import Conversation

ROLE = {"user": "prompter", "assistant": "assistant"}

# Which states each format may be imported into; the first is the default.
STATES: dict[str, tuple[TreeState, ...]] = {
    "prompts": (TreeState.INITIAL_PROMPT_REVIEW, TreeState.GROWING),
    "messages": (TreeState.READY_FOR_EXPORT, TreeState.GROWING, TreeState.RANKING),
    "pairs": (TreeState.READY_FOR_EXPORT, TreeState.RANKING, TreeState.GROWING),
    "completions": (TreeState.READY_FOR_EXPORT, TreeState.GROWING, TreeState.RANKING),
}


def tree_id_for(source: str, digest: str, occurrence: int) -> UUID:
    return uuid5(NAMESPACE, f"row/{source}/{digest}/{occurrence}")


def message_id(tree_id: UUID, place: int) -> UUID:
    return tree_id if place == 0 else uuid5(tree_id, f"m/{place}")


def export_tree(
    conversation: Conversation,
    tree_id: UUID,
    *,
    state: TreeState,
    lang: str,
    origin: str,
    model_name: str | None = None,
    ranked: bool = False,
) -> dict[str, Any]:
    """The ExportMessageTree of one row. Reviews count as passed unless the tree goes to
    initial review; a completion's false label is a rejected reply (KTO's undesirable);
    pairs rank chosen (0) above rejected (1)."""
    reviewed = state is not TreeState.INITIAL_PROMPT_REVIEW
    lang = conversation.lang or lang
    nodes: list[dict[str, Any]] = []
    for place, (role, text) in enumerate(conversation.turns):
        nodes.append(_node(tree_id, place, ROLE[role], text, lang, True if reviewed else None))
    for i, chain in enumerate(nodes[1:]):
        nodes[i]["replies"].append(chain)
    parent = nodes[-1]
    for k, (text, label) in enumerate(conversation.replies):
        place = len(conversation.turns) + k
        reply = _node(tree_id, place, "assistant", text, lang, label is not False)
        if ranked:
            reply["rank"] = k
        if model_name is not None:
            reply["model_name"] = model_name
            reply["synthetic"] = True
        parent["replies"].append(reply)
    return {
        "message_tree_id": str(tree_id),
        "tree_state": state.value,
        "origin": origin,
        "prompt": nodes[0],
    }


def _node(
    tree_id: UUID, place: int, role: str, text: str, lang: str, review: bool | None
) -> dict[str, Any]:
    node: dict[str, Any] = {
        "message_id": str(message_id(tree_id, place)),
        "role": role,
        "text": text,
        "lang": lang,
        "replies": [],
    }
    if review is not None:
        node["review_result"] = review
        node["review_count"] = 0
    return node
