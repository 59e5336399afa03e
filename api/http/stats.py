"""OA's tree-manager statistics, counted from the read model (aiosqlite, on the loop)."""

from __future__ import annotations

from typing import Any

from api.http.routing import Api, Call
from domain.model.states import TreeState


async def state_counts(call: Call) -> Any:
    found = dict(await call.rows("SELECT state, count(*) FROM trees GROUP BY state"))
    return {state.value: found.get(state.value, 0) for state in TreeState}


async def message_counts(call: Call) -> Any:
    only_active = call.flag("only_active", True)
    where = " WHERE t.active = 1" if only_active else ""
    rows = await call.rows(
        "SELECT t.tree_id, t.state, t.goal_tree_size, count(m.message_id) FROM trees t"
        " JOIN messages m ON m.tree_id = t.tree_id AND m.deleted = 0"
        f"{where} GROUP BY t.tree_id ORDER BY t.tree_id"
    )
    return [
        {"message_tree_id": r[0], "state": r[1], "goal_tree_size": r[2], "message_count": r[3]}
        for r in rows
    ]


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
        summary="undeleted messages per tree",
        tag="stats",
    )
