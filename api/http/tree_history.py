"""Beyond OA: a tree's event history, a message's revisions, and a tree as it was at a
version or a moment, all read from the log (the event store), never from a read model."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from api.http import auth
from api.http import schemas as s
from api.http.errors import validation
from api.http.messages import _target
from api.http.routing import Api, Call
from domain.model.as_of import parse_as_of
from domain.model.errors import ErrorCode, TreeNotFoundError
from domain.model.tree_purge import hide_purged, purged_in
from projections.queries import log as log_queries


async def _tree_events(call: Call, tree_id: UUID) -> list[tuple[int, Any]]:
    """(log position, decoded event) for every event of the tree, oldest first."""
    stored = await log_queries.stored_events(call.log_rows, tree_id)
    mapper = call.service.app.mapper
    return [(position, mapper.to_domain_event(event)) for position, event in stored]


async def history(call: Call) -> Any:
    row = await _target(call)
    message_id = UUID(row[0])
    revisions = []
    events = await _tree_events(call, UUID(row[1]))
    hidden = message_id in purged_in(e for _, e in events)  # purged: no text to show
    for _, event in events:
        name = type(event).__name__
        if (name == "TreeStarted" and event.originator_id == message_id) or (
            name == "ReplyAdded" and event.message_id == message_id
        ):
            revisions.append(
                s.MessageRevision(
                    message_id=message_id,
                    revision=0,
                    text="" if hidden else event.text,
                    user_id=event.user_id,
                    created_date=event.timestamp,
                )
            )
        elif name == "MessageEdited" and event.message_id == message_id:
            revisions.append(
                s.MessageRevision(
                    message_id=message_id,
                    revision=event.revision,
                    text="" if hidden else event.text,
                    user_id=event.user_id,
                    created_date=event.timestamp,
                )
            )
    return revisions


_OWN = ("originator_id", "originator_version", "timestamp", "user_id", "client_id")


async def tree_events(call: Call) -> Any:
    tree_id = call.path_id("tree_id", ErrorCode.NO_MESSAGE_TREE_FOUND, "tree")
    found = await _tree_events(call, tree_id)
    if not found:
        raise TreeNotFoundError(f"tree {tree_id} not found")
    # the owner rule of /messages/{id}, applied to the tree's prompt (its first event)
    auth.check_owner(call.api_client, getattr(found[0][1], "client_id", None))
    purged = purged_in(e for _, e in found)
    return [
        s.TreeEvent(
            position=position,
            version=e.originator_version,
            type=type(e).__name__,
            timestamp=e.timestamp,
            user_id=e.user_id,
            client_id=e.client_id,
            data=hide_purged(e, {k: v for k, v in vars(e).items() if k not in _OWN}, purged),
        )
        for position, e in found
    ]


def tree_at(call: Call) -> Any:
    tree_id = call.path_id("tree_id", ErrorCode.NO_MESSAGE_TREE_FOUND, "tree")
    raw = call.query("as_of")
    app = call.service.app
    version, moment = None, None
    if raw is not None:
        try:
            version, moment = parse_as_of(raw)
        except ValueError:
            raise validation(
                f"as_of must be a version number or an ISO time, not {raw!r}"
            ) from None
    # the prompt's owner decides (it never changes): read from the tree's first version,
    # before any other version is looked for
    first = app.get_tree(tree_id, version=1) if raw is not None else app.get_tree(tree_id)
    auth.check_owner(call.api_client, first.root.client_id)
    if raw is None:
        return first.as_dict()
    # as it was, less the text of messages purged since (the log keeps it; views do not)
    purged = {m.id for m in app.get_tree(tree_id).messages.values() if m.purged}
    view = app.get_tree(tree_id, version=version, as_of=moment).as_dict()
    for message in view["messages"]:
        if UUID(message["id"]) in purged:
            message["text"] = ""
    return view


def register(api: Api) -> None:
    api.add(
        "GET",
        "/api/v1/messages/{message_id}/history",
        history,
        access="trusted",
        response=list[s.MessageRevision],
        summary="a message's revisions",
        tag="messages",
    )
    api.add(
        "GET",
        "/api/v1/trees/{tree_id}",
        tree_at,
        response=dict,
        tag="trees",
        query={"as_of": "a version number or an ISO time"},
        summary="the tree now or as it was (beyond OA)",
    )
    api.add(
        "GET",
        "/api/v1/trees/{tree_id}/events",
        tree_events,
        response=list[s.TreeEvent],
        tag="trees",
        summary="the tree's event history with log positions (beyond OA)",
    )
