"""Read-model queries the task protocol needs: the details of a task's messages that its
hand-out payload leaves out (author, emojis). Who holds a task is the log's task index
(domain.service.task_index), so an ack never waits for a read model."""

from __future__ import annotations

import json
import sqlite3
from typing import Any
from uuid import UUID


def conversation_messages(
    conn: sqlite3.Connection, user_id: UUID, messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """OA's ConversationMessage fields for the payload's messages, as ``user_id`` sees
    them (its own emojis, whether it wrote them); emojis starting with "_" stay hidden."""
    ids = [m["message_id"] for m in messages]
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = {
        r[0]: r
        for r in conn.execute(
            f"SELECT message_id, user_id, frontend_message_id, emojis FROM messages"
            f" WHERE message_id IN ({marks})",
            ids,
        )
    }
    mine: dict[str, list[str]] = {}
    for message_id, emoji in conn.execute(
        f"SELECT message_id, emoji FROM message_emojis WHERE user_id = ?"
        f" AND message_id IN ({marks})",
        [str(user_id), *ids],
    ):
        if not emoji.startswith("_"):
            mine.setdefault(message_id, []).append(emoji)
    return [_message(m, rows.get(m["message_id"]), mine, user_id) for m in messages]


def _message(
    m: dict[str, Any], row: tuple | None, mine: dict[str, list[str]], user_id: UUID
) -> dict[str, Any]:
    emojis = json.loads(row[3]) if row else {}
    return {
        "id": m["message_id"],
        "text": m["text"],
        "lang": m.get("lang"),
        "is_assistant": m["is_assistant"],
        "synthetic": m.get("synthetic"),
        "user_id": row[1] if row else None,
        "frontend_message_id": row[2] if row else None,
        "emojis": {k: v for k, v in emojis.items() if not k.startswith("_")},
        "user_emojis": sorted(mine.get(m["message_id"], [])),
        "user_is_author": (row[1] == str(user_id)) if row else None,
    }
