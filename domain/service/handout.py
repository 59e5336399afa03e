"""Task hand-out (reference §2.3-2.4): pick a task type and target, record the task.

The candidates come from projections.availability, so every exclusion (own messages,
earlier labels/rankings/replies, skips, reservations of reply parents, messages under
review and ranking parents) is the same in counts and in hand-out. A request for one
type reads only that type's pool; ``random`` reads them all (its weights apply to the
non-empty ones). The chosen task is recorded on the user through DataEngine.issue_task, which
never touches the tree. The random source is injected, so tests and the simulator are
reproducible.

The read model shows a task a few milliseconds after it was recorded, so two requests
close together could both be handed the last free slot of a target. Given the runner's
position (``position``), a Handout also remembers its own hand-outs (``Claims``) until
every pool read still to be decided has seen them, and counts them as the read model
would: concurrent requests of one process never overbook a target.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.model.errors import TaskNotAvailableError
from domain.model.labels import (
    LABELS,
    LabelMode,
    MessageKind,
    TextLabel,
    disposition,
    mandatory_labels,
    valid_labels,
)
from domain.model.task_types import TaskType
from domain.model.user import Task
from projections import availability as av

T = TaskType
# OA's type weights for `random`, applied only to non-empty pools.
WEIGHTS = {"ranking": 10.0, "label_reply": 5.0, "label_prompt": 5.0, "reply": 2.0, "prompt": 0.01}


@dataclass(frozen=True, slots=True)
class HandedOut:
    task: Task
    payload: dict[str, Any]
    position: int | None = None  # at or after the TaskIssued: what to catch up with

    @property
    def id(self) -> UUID:
        return self.task.id

    @property
    def type(self) -> str:
        return self.task.type


@dataclass(frozen=True, slots=True)
class Choice:
    task_type: TaskType
    tree_id: str | None
    message_id: str | None
    mode: LabelMode | None = None


def _category_pools(p: av.Pools) -> dict[str, list[Any]]:
    return {
        "ranking": p.rankings,
        "label_reply": [r for r in p.reviews if not r.is_root],
        "label_prompt": [r for r in p.reviews if r.is_root],
        # Every extendible parent's tree has room (goal_tree_size > grow_size), so OA's
        # "sum of missing messages > 0" is the same as "any extendible parent".
        "reply": p.parents,
        "prompt": [None] if p.initial_prompts > 0 else [],
    }


def choose(p: av.Pools, config: Any, requested: TaskType, rng: random.Random) -> Choice:
    """The task type and target for a request; TaskNotAvailableError when there is none."""
    requested = TaskType(requested)
    if requested is T.RANDOM:
        pools = {k: v for k, v in _category_pools(p).items() if v}
        if not pools:
            raise TaskNotAvailableError("no task available")
        names = sorted(pools)
        category = rng.choices(names, weights=[WEIGHTS[n] for n in names])[0]
        candidates = pools[category]
    else:
        if requested is T.INITIAL_PROMPT:
            candidates = [None] if p.initial_prompts > 0 else []
        else:
            candidates = p.candidates(requested)
        if not candidates:
            raise TaskNotAvailableError(f"no task of type {requested.value} available")
        category = None
    random_request = requested is T.RANDOM
    first = candidates[0]
    if first is None:
        return Choice(T.INITIAL_PROMPT, None, None)
    if isinstance(first, av.Parent):
        target = _reply_target(candidates, config, rng)
        kind = T.PROMPTER_REPLY if target.role == "assistant" else T.ASSISTANT_REPLY
        return Choice(kind, target.tree_id, target.message_id)
    target = rng.choice(candidates)
    if isinstance(target, av.RankingParent):
        kind = (
            T.RANK_PROMPTER_REPLIES if target.child_role == "prompter" else T.RANK_ASSISTANT_REPLIES
        )
        return Choice(kind, target.tree_id, target.message_id)
    assert isinstance(target, av.Review), category
    if target.is_root:
        kind, p_full = T.LABEL_INITIAL_PROMPT, config.p_full_labeling_review_prompt
    elif target.role == "assistant":
        kind, p_full = T.LABEL_ASSISTANT_REPLY, config.p_full_labeling_review_reply_assistant
    else:
        kind, p_full = T.LABEL_PROMPTER_REPLY, config.p_full_labeling_review_reply_prompter
    # OA: full mode unless a random request draws above p_full (explicit requests: full).
    simple = random_request and rng.random() > p_full
    return Choice(
        kind, target.tree_id, target.message_id, LabelMode.SIMPLE if simple else LabelMode.FULL
    )


def _reply_target(parents: list[av.Parent], config: Any, rng: random.Random) -> av.Parent:
    """The lonely-child rule: prefer prompter parents with one reply, to get a sibling to rank."""
    if config.p_lonely_child_extension > 0 and config.lonely_children_count > 1:
        lonely = [
            p
            for p in parents
            if p.role == "prompter" and 0 < p.active_children < config.lonely_children_count
        ]
        if lonely and rng.random() < config.p_lonely_child_extension:
            return rng.choice(lonely)
    return rng.choice(parents)


# ---------------------------------------------------------------- payloads
def _tree_messages(conn: sqlite3.Connection, tree_id: str) -> dict[str, tuple]:
    rows = conn.execute(
        "SELECT message_id, parent_id, role, text, lang, synthetic, model_name, review_result,"
        " deleted FROM messages WHERE tree_id = ?",
        (tree_id,),
    ).fetchall()
    return {row[0]: row for row in rows}


def _message_dict(row: tuple) -> dict[str, Any]:
    return {
        "message_id": row[0],
        "text": row[3],
        "lang": row[4],
        "is_assistant": row[2] == "assistant",
        "synthetic": bool(row[5]),
    }


def _conversation(messages: dict[str, tuple], last_id: str) -> list[dict[str, Any]]:
    path = []
    current: str | None = last_id
    while current is not None:
        row = messages[current]
        path.append(_message_dict(row))
        current = row[1]
    return path[::-1]


def _ranking_payload(
    messages: dict[str, tuple], choice: Choice, kind: TaskType, rng: random.Random
) -> dict[str, Any]:
    """The replies to rank, shuffled (the order shown is the task's display order)."""
    role = "prompter" if kind is T.RANK_PROMPTER_REPLIES else "assistant"
    replies = sorted(
        (
            m
            for m in messages.values()
            if m[1] == choice.message_id and m[2] == role and m[7] == 1 and not m[8]
        ),
        key=lambda m: m[0],
    )
    rng.shuffle(replies)
    reply_messages = [_message_dict(m) for m in replies]
    human = any(not m[5] for m in replies)
    if human:  # OA hides which replies are synthetic when any was written by a person
        for m in reply_messages:
            m["synthetic"] = None
    return dict(
        ranking_parent_id=choice.message_id,
        replies=[m[3] for m in replies],
        reply_messages=reply_messages,
        reveal_synthetic=not human,
    )


def payload_for(
    conn: sqlite3.Connection, config: Any, choice: Choice, rng: random.Random
) -> dict[str, Any]:
    kind = choice.task_type
    if kind is T.INITIAL_PROMPT:
        return {"type": kind.value, "hint": None}
    assert choice.tree_id is not None and choice.message_id is not None
    messages = _tree_messages(conn, choice.tree_id)
    conversation = _conversation(messages, choice.message_id)
    payload: dict[str, Any] = {
        "type": kind.value,
        "message_tree_id": choice.tree_id,
        "conversation": {"messages": conversation},
    }
    if kind in (T.ASSISTANT_REPLY, T.PROMPTER_REPLY):
        payload["parent_message_id"] = choice.message_id
        return payload
    if kind in (T.RANK_ASSISTANT_REPLIES, T.RANK_PROMPTER_REPLIES):
        payload.update(_ranking_payload(messages, choice, kind, rng))
        return payload
    label_kind = {
        T.LABEL_INITIAL_PROMPT: MessageKind.INITIAL_PROMPT,
        T.LABEL_ASSISTANT_REPLY: MessageKind.ASSISTANT_REPLY,
        T.LABEL_PROMPTER_REPLY: MessageKind.PROMPTER_REPLY,
    }[kind]
    mode = choice.mode or LabelMode.FULL
    valid = list(valid_labels(config, label_kind, mode))
    target = messages[choice.message_id]
    payload.update(
        message_id=choice.message_id,
        mode=mode.value,
        disposition=disposition(mode).value,
        valid_labels=valid,
        mandatory_labels=list(mandatory_labels(config, label_kind)),
        labels=[
            {
                "name": n,
                "widget": LABELS[TextLabel(n)].widget.value,
                "display_text": LABELS[TextLabel(n)].display_text,
                "help_text": LABELS[TextLabel(n)].help_text,
            }
            for n in valid
        ],
    )
    if kind is T.LABEL_INITIAL_PROMPT:
        payload["prompt"] = target[3]
    else:
        payload.update(reply=target[3], reply_message=_message_dict(target))
    return payload


# ---------------------------------------------------------------- claims
_KIND = {
    T.ASSISTANT_REPLY: "reply",
    T.PROMPTER_REPLY: "reply",
    T.LABEL_INITIAL_PROMPT: "label",
    T.LABEL_ASSISTANT_REPLY: "label",
    T.LABEL_PROMPTER_REPLY: "label",
    T.RANK_ASSISTANT_REPLIES: "rank",
    T.RANK_PROMPTER_REPLIES: "rank",
}


@dataclass(slots=True)
class _Claim:
    message_id: str
    user_id: str
    kind: str
    bound: int | None = None  # a log position at or after its TaskIssued; None: issuing


class Claims:
    """Targets handed out by this process that a pool read may not show yet.

    A claim whose ``bound`` is at or below the read-model position a pool read started
    from is in that read; the others are counted on top of it, as the pool queries count
    open tasks (reply parents: anyone's; reviews and rankings: other users'). A claim is
    forgotten once every pool read still in progress, and every later one, includes it.
    """

    def __init__(self, position: Callable[[], int]):
        self.position = position
        self.lock = threading.Lock()
        self._claims: list[_Claim] = []
        self._reading: dict[int, int] = {}  # pool reads in progress: token -> position seen
        self._tokens = iter(range(1, 1 << 62))

    def start_read(self) -> tuple[int, int]:
        with self.lock:
            token, seen = next(self._tokens), self.position()
            self._reading[token] = seen
            return token, seen

    def decide(
        self,
        token: int,
        seen: int,
        pools: av.Pools,
        user_id: UUID,
        pick: Callable[[av.Pools], Choice],
    ) -> tuple[Choice, _Claim | None]:
        """``pick`` from ``pools`` less the unseen claims, and claim its target: atomic."""
        with self.lock:
            del self._reading[token]
            floor = min([seen, self.position(), *self._reading.values()])
            self._claims = [c for c in self._claims if c.bound is None or c.bound > floor]
            unseen = [c for c in self._claims if c.bound is None or c.bound > seen]
            choice = pick(_without(pools, unseen, str(user_id)) if unseen else pools)
            kind = _KIND.get(choice.task_type)
            if kind is None or choice.message_id is None:
                return choice, None
            claim = _Claim(choice.message_id, str(user_id), kind)
            self._claims.append(claim)
            return choice, claim

    def abort_read(self, token: int) -> None:
        with self.lock:
            self._reading.pop(token, None)

    def settle(self, claim: _Claim | None, bound: int | None) -> None:
        """The claim's task is recorded at or before ``bound``; None: it was not recorded."""
        if claim is None:
            return
        with self.lock:
            if bound is None:
                self._claims = [c for c in self._claims if c is not claim]
            else:
                claim.bound = bound


def _without(pools: av.Pools, claims: list[_Claim], user_id: str) -> av.Pools:
    replies = {c.message_id for c in claims if c.kind == "reply"}
    others: dict[tuple[str, str], int] = {}
    for c in claims:
        if c.kind != "reply" and c.user_id != user_id:
            others[c.kind, c.message_id] = others.get((c.kind, c.message_id), 0) + 1
    reviews = [r for r in pools.reviews if r.free > others.get(("label", r.message_id), 0)]
    rankings = [r for r in pools.rankings if r.free > others.get(("rank", r.message_id), 0)]
    return replace(
        pools,
        parents=[p for p in pools.parents if p.message_id not in replies],
        reviews=reviews,
        rankings=rankings,
    )


class Handout:
    """Hands tasks to users: ``request(user_id, task_type, lang)`` -> HandedOut.

    ``before_read`` (e.g. a runner's ``sync``) runs before the pools are read, so a user
    sees the effect of their own earlier commands and reservations. ``position`` (the
    read model's log position, e.g. a live runner's) turns on the claims, for a server
    whose requests run concurrently.
    """

    def __init__(
        self,
        app: Any,
        conn_factory: Callable[[], sqlite3.Connection],
        rng: random.Random | None = None,
        before_read: Callable[[], Any] | None = None,
        clock: Callable[[], datetime] | None = None,
        position: Callable[[], int] | None = None,
    ):
        self.app = app
        self.connection = conn_factory
        self.rng = rng or random.Random()
        self.before_read = before_read
        self.clock = clock or app.now
        self.claims = Claims(position) if position is not None else None

    def pools(
        self, user_id: UUID, lang: str = "en", task_type: TaskType | str | None = None
    ) -> av.Pools:
        if self.before_read is not None:
            self.before_read()
        return av.pools(self.connection(), self.app.config, lang, user_id, self.clock(), task_type)

    def request(
        self, user_id: UUID, task_type: TaskType | str = T.RANDOM, lang: str = "en"
    ) -> HandedOut:
        conn = self.connection()
        kind, config = TaskType(task_type), self.app.config

        def pick(pools: av.Pools) -> Choice:
            return choose(pools, config, kind, self.rng)

        claims, claim = self.claims, None
        if claims is None:
            choice = pick(self.pools(user_id, lang, kind))
        else:
            token, seen = claims.start_read()
            try:
                pools = self.pools(user_id, lang, kind)
            except BaseException:
                claims.abort_read(token)
                raise
            choice, claim = claims.decide(token, seen, pools, user_id, pick)
        recorded, position = False, None
        try:
            payload = payload_for(conn, config, choice, self.rng)
            task = self.app.issue_task(
                user_id=user_id,
                task_type=choice.task_type,
                lang=lang,
                payload=payload,
                tree_id=UUID(choice.tree_id) if choice.tree_id else None,
                message_id=UUID(choice.message_id) if choice.message_id else None,
            )
            recorded = True
            position = self.app.recorder.max_notification_id()  # at or after the TaskIssued
        finally:
            if claims is not None:
                claims.settle(claim, position if recorded else None)
        return HandedOut(task, payload, position)
