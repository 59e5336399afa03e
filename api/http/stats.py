"""OA's tree-manager statistics, counted from the read model (aiosqlite, on the loop)."""

from __future__ import annotations

from typing import Any

from api.http.routing import Api, Call
from domain.model.states import TreeState
from projections import oa_queries
from projections.queries import trees


async def state_counts(call: Call) -> Any:
    found = await call.read(trees.count_by_state)
    return {state.value: found.get(state.value, 0) for state in TreeState}


async def message_counts(call: Call) -> Any:
    """OA's TreeMessageCountStats per tree (projections.oa_queries)."""
    return await call.read(oa_queries.message_counts, call.flag("only_active", True))


def register(api: Api) -> None:
    api.add(
        "GET",
        "/api/v1/stats/tree_manager/state_counts",
        state_counts,
        response=dict[str, int],
        summary="trees per state",
        tag="stats",
    )
    api.add(
        "GET",
        "/api/v1/stats/tree_manager/message_counts",
        message_counts,
        response=list[dict[str, Any]],
        query={"only_active": "default true"},
        summary="undeleted messages per tree: count, depth, oldest, youngest",
        tag="stats",
    )
