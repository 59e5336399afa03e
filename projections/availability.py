"""Which tasks a user can get, per type and language (reference §2.2), from the read model.

Each pool is one query over the read model, parametrised by language, requesting user
and time; nothing here writes (OA's availability call ran the lottery and
auto-moderation first; ours only counts). Two deliberate differences from OA:
a parent whose children were all rejected or deleted stays extendible (OA's LEFT JOIN
dropped it), and a ranking parent is complete when it has received
``num_required_rankings`` rankings, the same rule the aggregate enforces.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from domain.config import TreeConfig
from domain.message import SKIP_LABELING, SKIP_RANKING, SKIP_REPLY
from domain.task_types import TaskType

T = TaskType
REPLY_TYPES = (T.ASSISTANT_REPLY.value, T.PROMPTER_REPLY.value)


@dataclass(frozen=True, slots=True)
class Parent:
    """An extendible parent: a reply to it would be accepted by the tree."""

    message_id: str
    tree_id: str
    role: str
    active_children: int
    room: int  # goal_tree_size - grow_size of its tree


@dataclass(frozen=True, slots=True)
class Review:
    message_id: str
    tree_id: str
    role: str
    is_root: bool


@dataclass(frozen=True, slots=True)
class RankingParent:
    message_id: str
    tree_id: str
    child_role: str


def _params(config: TreeConfig, lang: str, user_id: UUID | str | None,
            now: datetime | None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    return {"lang": lang, "user": str(user_id) if user_id is not None else "",
            "since": now.timestamp() - config.recent_tasks_span_sec,
            "prompter_replies": config.num_prompter_replies,
            "required": config.num_required_rankings,
            "skip_reply": SKIP_REPLY, "skip_labeling": SKIP_LABELING, "skip_ranking": SKIP_RANKING}


# The open slots are counted once per candidate (MATERIALIZED), and the user's exclusions
# are looked up only for parents that still have a free slot.
_EXTENDIBLE = f"""
WITH open_parents AS MATERIALIZED (
  SELECT m.message_id, m.tree_id, m.role, t.goal_tree_size - t.grow_size AS room,
    CASE WHEN m.role = 'assistant' THEN min(t.max_children_count, :prompter_replies)
         ELSE t.max_children_count END AS max_children,
    (SELECT count(*) FROM messages c WHERE c.parent_id = m.message_id AND c.deleted = 0
       AND (c.review_result = 1 OR c.review_result IS NULL)) AS active_children
  FROM trees t JOIN messages m ON m.tree_id = t.tree_id
  WHERE t.state = 'growing' AND t.lang = :lang AND t.grow_size < t.goal_tree_size
    AND m.deleted = 0 AND m.review_result = 1 AND m.depth < t.max_depth AND m.lang = :lang)
SELECT p.message_id, p.tree_id, p.role, p.active_children, p.room FROM open_parents p
WHERE p.active_children < p.max_children
  AND NOT EXISTS (SELECT 1 FROM messages r WHERE r.parent_id = p.message_id
                  AND r.user_id = :user)
  AND NOT EXISTS (SELECT 1 FROM message_emojis e WHERE e.message_id = p.message_id
                  AND e.emoji = :skip_reply AND e.user_id = :user)
  AND NOT EXISTS (SELECT 1 FROM tasks k WHERE k.status = 'open' AND k.message_id = p.message_id
                  AND k.type IN {REPLY_TYPES!r} AND k.issued_at >= :since)
ORDER BY p.message_id"""

_NEED_REVIEW = """
SELECT m.message_id, m.tree_id, m.role, m.parent_id IS NULL
FROM trees t JOIN messages m ON m.tree_id = t.tree_id
WHERE t.lang = :lang AND t.state IN ('initial_prompt_review', 'growing')
  AND ((m.parent_id IS NULL AND t.state = 'initial_prompt_review')
       OR (m.parent_id IS NOT NULL AND t.state = 'growing'))
  AND m.review_result IS NULL AND m.deleted = 0 AND m.lang = :lang
  AND (m.user_id IS NULL OR m.user_id != :user)
  AND instr(',' || m.reviewers, ',' || :user || ',') = 0  -- not reviewed by the user yet
  AND NOT EXISTS (SELECT 1 FROM message_emojis e WHERE e.message_id = m.message_id
                  AND e.emoji = :skip_labeling AND e.user_id = :user)
ORDER BY m.message_id"""

# Driven from the rankable children (accepted, undeleted replies, a partial index of their
# own): ranking trees are mostly leaves, so grouping the children first leaves only the
# parents worth checking.
_INCOMPLETE_RANKINGS = """
SELECT g.parent_id, g.tree_id, g.role FROM (
  SELECT c.parent_id, c.tree_id, c.role, count(*) AS n,
    sum(coalesce(c.user_id = :user, 0)) AS mine
  FROM trees t JOIN messages c ON c.tree_id = t.tree_id
  WHERE t.state = 'ranking' AND t.lang = :lang
    AND c.review_result = 1 AND c.deleted = 0 AND c.parent_id IS NOT NULL
    AND c.role IN (SELECT value FROM json_each(:roles))
  GROUP BY c.parent_id, c.role) g
JOIN messages p ON p.message_id = g.parent_id
WHERE g.n > 1 AND g.mine = 0
  AND p.lang = :lang AND p.deleted = 0 AND p.rankings_received < :required
  AND NOT EXISTS (SELECT 1 FROM message_emojis e WHERE e.message_id = g.parent_id
                  AND e.emoji = :skip_ranking AND e.user_id = :user)
  AND NOT EXISTS (SELECT 1 FROM rankings r WHERE r.parent_id = g.parent_id AND r.user_id = :user)
ORDER BY g.parent_id"""


def extendible_parents(conn: sqlite3.Connection, config: TreeConfig, lang: str,
                       user_id: UUID | str | None, now: datetime | None = None) -> list[Parent]:
    rows = conn.execute(_EXTENDIBLE, _params(config, lang, user_id, now)).fetchall()
    return [Parent(*row) for row in rows]


def messages_needing_review(conn: sqlite3.Connection, config: TreeConfig, lang: str,
                            user_id: UUID | str | None) -> list[Review]:
    rows = conn.execute(_NEED_REVIEW, _params(config, lang, user_id, None)).fetchall()
    return [Review(m, t, r, bool(root)) for m, t, r, root in rows]


def incomplete_rankings(conn: sqlite3.Connection, config: TreeConfig, lang: str,
                        user_id: UUID | str | None) -> list[RankingParent]:
    import json

    roles = ["assistant", "prompter"] if config.rank_prompter_replies else ["assistant"]
    params = _params(config, lang, user_id, None) | {"roles": json.dumps(roles)}
    return [RankingParent(*row) for row in conn.execute(_INCOMPLETE_RANKINGS, params).fetchall()]


def tree_state_counts(conn: sqlite3.Connection, lang: str,
                      states: tuple[str, ...] | None = None) -> dict[str, int]:
    """Trees per state in a language; only the given states, if any (each an index range,
    so the count does not grow with the finished trees)."""
    if states is None:
        return dict(conn.execute("SELECT state, count(*) FROM trees WHERE lang = ?"
                                 " GROUP BY state", (lang,)).fetchall())
    return {state: conn.execute("SELECT count(*) FROM trees WHERE state = ? AND lang = ?",
                                (state, lang)).fetchone()[0] for state in states}


_LOTTERY_STATES = ("growing", "initial_prompt_review", "prompt_lottery_waiting")


def initial_prompt_count(conn: sqlite3.Connection, config: TreeConfig, lang: str) -> int:
    """OA's lottery formula: room to grow plus room to review, capped by the waiting room."""
    if lang in config.disabled_langs:
        return 0
    states = tree_state_counts(conn, lang, _LOTTERY_STATES)
    room = (max(0, config.max_active_trees - states.get("growing", 0))
            + max(0, config.max_initial_prompt_review - states.get("initial_prompt_review", 0)))
    return min(room, max(0, config.max_prompt_lottery_waiting
                          - states.get("prompt_lottery_waiting", 0)))


@dataclass(frozen=True, slots=True)
class Pools:
    """Every candidate target for one user and language at one moment."""

    parents: list[Parent]
    reviews: list[Review]
    rankings: list[RankingParent]
    initial_prompts: int

    def candidates(self, task_type: TaskType) -> list[Any]:
        t = TaskType(task_type)
        if t is T.ASSISTANT_REPLY:
            return [p for p in self.parents if p.role == "prompter"]
        if t is T.PROMPTER_REPLY:
            return [p for p in self.parents if p.role == "assistant"]
        if t is T.LABEL_INITIAL_PROMPT:
            return [r for r in self.reviews if r.is_root]
        if t is T.LABEL_ASSISTANT_REPLY:
            return [r for r in self.reviews if not r.is_root and r.role == "assistant"]
        if t is T.LABEL_PROMPTER_REPLY:
            return [r for r in self.reviews if not r.is_root and r.role == "prompter"]
        if t is T.RANK_ASSISTANT_REPLIES:
            return [r for r in self.rankings if r.child_role == "assistant"]
        if t is T.RANK_PROMPTER_REPLIES:
            return [r for r in self.rankings if r.child_role == "prompter"]
        return []

    def counts(self) -> dict[TaskType, int]:
        counts = {t: len(self.candidates(t)) for t in TaskType}
        counts[T.INITIAL_PROMPT] = self.initial_prompts
        counts[T.RANDOM] = sum(v for k, v in counts.items() if k is not T.RANDOM)
        return counts


def pools(conn: sqlite3.Connection, config: TreeConfig, lang: str, user_id: UUID | str | None,
          now: datetime | None = None) -> Pools:
    return Pools(extendible_parents(conn, config, lang, user_id, now),
                 messages_needing_review(conn, config, lang, user_id),
                 incomplete_rankings(conn, config, lang, user_id),
                 initial_prompt_count(conn, config, lang))


def availability(conn: sqlite3.Connection, config: TreeConfig, lang: str = "en",
                 user_id: UUID | str | None = None,
                 now: datetime | None = None) -> dict[TaskType, int]:
    """Task counts per type for this user and language (OA's /tasks/availability)."""
    return pools(conn, config, lang, user_id, now).counts()
