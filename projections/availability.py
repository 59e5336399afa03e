"""Which tasks a user can get, per type and language (reference §2.2), from the read model.

Each pool is one query over the read model, parametrised by language, requesting user
and time; nothing here writes (OA's availability call ran the lottery and
auto-moderation first; ours only counts). Three deliberate differences from OA:
a parent whose children were all rejected or deleted stays extendible (OA's LEFT JOIN
dropped it); a ranking parent is complete when it has received
``num_required_rankings`` rankings, the same rule the aggregate enforces; and open tasks
reserve their targets (OA reserves only reply parents):

- a reply parent with an open reply task issued in the last ``recent_tasks_span_sec``
  is hidden (OA's rule);
- a message under review is hidden while its reviews so far plus its open label tasks
  reach the reviews it needs (``num_reviews_initial_prompt``/``num_reviews_reply``);
- a ranking parent likewise while its rankings plus its open ranking tasks reach
  ``num_required_rankings``.

Without the last two, several people label or rank the same message at once and, once
enough answers are in, the slower ones' work is refused: time wasted, and in a crowd
most of the refusals. A reservation holds while the task is open, for at most
``recent_tasks_span_sec`` after it was issued (as a reply reservation) and never past the
task's expiry: an abandoned task frees its target after five minutes, not after the
task's 48-hour validity. Only other users' tasks reserve a target for a requester: the
holder of a task may be handed its target again (a reloaded page), as before.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.model.config import TreeConfig
from domain.model.message import SKIP_LABELING, SKIP_RANKING, SKIP_REPLY
from domain.model.task_types import TaskType

REPLY_TYPES = (TaskType.ASSISTANT_REPLY.value, TaskType.PROMPTER_REPLY.value)
LABEL_TYPES = (
    TaskType.LABEL_INITIAL_PROMPT.value,
    TaskType.LABEL_ASSISTANT_REPLY.value,
    TaskType.LABEL_PROMPTER_REPLY.value,
)
RANK_TYPES = (TaskType.RANK_ASSISTANT_REPLIES.value, TaskType.RANK_PROMPTER_REPLIES.value)


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
    free: int = 1  # reviews still needed less other users' open label tasks (> 0)


@dataclass(frozen=True, slots=True)
class RankingParent:
    message_id: str
    tree_id: str
    child_role: str
    free: int = 1  # rankings still needed less other users' open ranking tasks (> 0)


def _params(
    config: TreeConfig, lang: str, user_id: UUID | str | None, now: datetime | None
) -> dict[str, Any]:
    at = (now or datetime.now(UTC)).timestamp()
    return {
        "lang": lang,
        "user": str(user_id) if user_id is not None else "",
        "now": at,
        "since": at - config.recent_tasks_span_sec,
        "prompter_replies": config.num_prompter_replies,
        "required": config.num_required_rankings,
        "reviews_prompt": config.num_reviews_initial_prompt,
        "reviews_reply": config.num_reviews_reply,
        "skip_reply": SKIP_REPLY,
        "skip_labeling": SKIP_LABELING,
        "skip_ranking": SKIP_RANKING,
    }


def _reserved(target: str, types: tuple[str, ...]) -> str:
    """Other users' open tasks of ``types`` on ``target`` that still hold it (see the
    module's doc). Looked up per candidate in the small partial index of open tasks."""
    return (
        f"(SELECT count(*) FROM tasks k WHERE k.status = 'open' AND k.message_id = {target}"
        f" AND k.type IN {types!r} AND k.issued_at >= :since AND k.expires_at > :now"
        f" AND k.user_id != :user)"
    )


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

_REVIEWS_FREE = (
    f"CASE WHEN m.parent_id IS NULL THEN :reviews_prompt ELSE :reviews_reply END"
    f" - m.review_count - {_reserved('m.message_id', LABEL_TYPES)}"
)
# The free slots are computed once per candidate (MATERIALIZED: a flattened query would
# evaluate them again in the filter).
_NEED_REVIEW = f"""
WITH candidates AS MATERIALIZED (
  SELECT m.message_id, m.tree_id, m.role, m.parent_id IS NULL AS is_root,
    {_REVIEWS_FREE} AS free
  FROM trees t JOIN messages m ON m.tree_id = t.tree_id
  WHERE t.lang = :lang AND t.state IN ('initial_prompt_review', 'growing')
    AND ((m.parent_id IS NULL AND t.state = 'initial_prompt_review')
         OR (m.parent_id IS NOT NULL AND t.state = 'growing'))
    AND m.review_result IS NULL AND m.deleted = 0 AND m.lang = :lang
    AND (m.user_id IS NULL OR m.user_id != :user)
    AND instr(',' || m.reviewers, ',' || :user || ',') = 0  -- not reviewed by the user yet
    AND NOT EXISTS (SELECT 1 FROM message_emojis e WHERE e.message_id = m.message_id
                    AND e.emoji = :skip_labeling AND e.user_id = :user))
SELECT message_id, tree_id, role, is_root, free FROM candidates WHERE free > 0
ORDER BY message_id"""

# Driven from the rankable children (accepted, undeleted replies, a partial index of their
# own): ranking trees are mostly leaves, so grouping the children first leaves only the
# parents worth checking.
_RANKINGS_FREE = f":required - p.rankings_received - {_reserved('g.parent_id', RANK_TYPES)}"
_INCOMPLETE_RANKINGS = f"""
SELECT g.parent_id, g.tree_id, g.role, {_RANKINGS_FREE} FROM (
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
  AND {_RANKINGS_FREE} > 0
ORDER BY g.parent_id"""


def extendible_parents(
    conn: sqlite3.Connection,
    config: TreeConfig,
    lang: str,
    user_id: UUID | str | None,
    now: datetime | None = None,
) -> list[Parent]:
    rows = conn.execute(_EXTENDIBLE, _params(config, lang, user_id, now)).fetchall()
    return [Parent(*row) for row in rows]


def messages_needing_review(
    conn: sqlite3.Connection,
    config: TreeConfig,
    lang: str,
    user_id: UUID | str | None,
    now: datetime | None = None,
) -> list[Review]:
    rows = conn.execute(_NEED_REVIEW, _params(config, lang, user_id, now)).fetchall()
    return [Review(m, t, r, bool(root), free) for m, t, r, root, free in rows]


_ROLES = {True: '["assistant", "prompter"]', False: '["assistant"]'}


def incomplete_rankings(
    conn: sqlite3.Connection,
    config: TreeConfig,
    lang: str,
    user_id: UUID | str | None,
    now: datetime | None = None,
) -> list[RankingParent]:
    params = _params(config, lang, user_id, now)
    params["roles"] = _ROLES[bool(config.rank_prompter_replies)]
    return [RankingParent(*row) for row in conn.execute(_INCOMPLETE_RANKINGS, params).fetchall()]


def tree_state_counts(
    conn: sqlite3.Connection, lang: str, states: tuple[str, ...] | None = None
) -> dict[str, int]:
    """Trees per state in a language; only the given states, if any (each an index range,
    so the count does not grow with the finished trees)."""
    if states is None:
        return dict(
            conn.execute(
                "SELECT state, count(*) FROM trees WHERE lang = ? GROUP BY state", (lang,)
            ).fetchall()
        )
    return {
        state: conn.execute(
            "SELECT count(*) FROM trees WHERE state = ? AND lang = ?", (state, lang)
        ).fetchone()[0]
        for state in states
    }


_LOTTERY_STATES = ("growing", "initial_prompt_review", "prompt_lottery_waiting")


def initial_prompt_count(conn: sqlite3.Connection, config: TreeConfig, lang: str) -> int:
    """OA's lottery formula: room to grow plus room to review, capped by the waiting room."""
    if lang in config.disabled_langs:
        return 0
    states = tree_state_counts(conn, lang, _LOTTERY_STATES)
    room = max(0, config.max_active_trees - states.get("growing", 0)) + max(
        0, config.max_initial_prompt_review - states.get("initial_prompt_review", 0)
    )
    return min(
        room, max(0, config.max_prompt_lottery_waiting - states.get("prompt_lottery_waiting", 0))
    )


@dataclass(frozen=True, slots=True)
class Pools:
    """Every candidate target for one user and language at one moment."""

    parents: list[Parent]
    reviews: list[Review]
    rankings: list[RankingParent]
    initial_prompts: int

    def candidates(self, task_type: TaskType) -> list[Any]:
        t = TaskType(task_type)
        if t is TaskType.ASSISTANT_REPLY:
            return [p for p in self.parents if p.role == "prompter"]
        if t is TaskType.PROMPTER_REPLY:
            return [p for p in self.parents if p.role == "assistant"]
        if t is TaskType.LABEL_INITIAL_PROMPT:
            return [r for r in self.reviews if r.is_root]
        if t is TaskType.LABEL_ASSISTANT_REPLY:
            return [r for r in self.reviews if not r.is_root and r.role == "assistant"]
        if t is TaskType.LABEL_PROMPTER_REPLY:
            return [r for r in self.reviews if not r.is_root and r.role == "prompter"]
        if t is TaskType.RANK_ASSISTANT_REPLIES:
            return [r for r in self.rankings if r.child_role == "assistant"]
        if t is TaskType.RANK_PROMPTER_REPLIES:
            return [r for r in self.rankings if r.child_role == "prompter"]
        return []

    def counts(self) -> dict[TaskType, int]:
        counts = {t: len(self.candidates(t)) for t in TaskType}
        counts[TaskType.INITIAL_PROMPT] = self.initial_prompts
        counts[TaskType.RANDOM] = sum(v for k, v in counts.items() if k is not TaskType.RANDOM)
        return counts


# The pool a request for one type draws from; `random` (and counting) needs all four.
_POOL_OF = {
    TaskType.ASSISTANT_REPLY: "parents",
    TaskType.PROMPTER_REPLY: "parents",
    TaskType.LABEL_INITIAL_PROMPT: "reviews",
    TaskType.LABEL_ASSISTANT_REPLY: "reviews",
    TaskType.LABEL_PROMPTER_REPLY: "reviews",
    TaskType.RANK_ASSISTANT_REPLIES: "rankings",
    TaskType.RANK_PROMPTER_REPLIES: "rankings",
    TaskType.INITIAL_PROMPT: "initial_prompts",
}


def pools(
    conn: sqlite3.Connection,
    config: TreeConfig,
    lang: str,
    user_id: UUID | str | None,
    now: datetime | None = None,
    task_type: TaskType | str | None = None,
) -> Pools:
    """Every pool; with ``task_type``, only the one a request for that type draws from
    (the others left empty), so an explicit request does not pay for the other queries.
    ``random`` and None mean all. One ``now`` for all of them."""
    now = now or datetime.now(UTC)
    wanted = TaskType.RANDOM if task_type is None else TaskType(task_type)
    only = (
        None if wanted is TaskType.RANDOM else _POOL_OF.get(wanted, "none")
    )  # none: never handed out
    want = lambda pool: only is None or only == pool  # noqa: E731
    return Pools(
        extendible_parents(conn, config, lang, user_id, now) if want("parents") else [],
        messages_needing_review(conn, config, lang, user_id, now) if want("reviews") else [],
        incomplete_rankings(conn, config, lang, user_id, now) if want("rankings") else [],
        initial_prompt_count(conn, config, lang) if want("initial_prompts") else 0,
    )


def availability(
    conn: sqlite3.Connection,
    config: TreeConfig,
    lang: str = "en",
    user_id: UUID | str | None = None,
    now: datetime | None = None,
) -> dict[TaskType, int]:
    """Task counts per type for this user and language (OA's /tasks/availability)."""
    return pools(conn, config, lang, user_id, now).counts()
