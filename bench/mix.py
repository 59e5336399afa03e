"""The benchmark's workload: what simulated users do to one tree, from prompt to export.

A plan is worked out up front and is pure data: message ids are chosen by the driver, so
every step's target is known before anything runs, and the expected end state can be
checked afterwards. The order follows Open-Assistant's lifecycle: prompt, its reviews,
activation (the prompt lottery), then breadth-first growth (replies to one parent, then
their reviews) until the goal size is reached, then rankings of every rankable parent.
Users are picked round-robin from a small pool, skipping whoever the rules forbid
(authors may not review or rank their own messages, nobody reviews or ranks twice).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.model.config import TreeConfig

# A positive review: no spam, right language, so every message is accepted.
REVIEW_LABELS = {"spam": 0.0, "lang_mismatch": 0.0, "quality": 0.75, "creativity": 0.5}
_LOREM = (
    "Explain, with a short example, how the tides follow the moon and why there are two "
    "high tides a day; keep it friendly and avoid jargon where a plain word will do. "
)


def text_for(label: str) -> str:
    return f"{label}: {_LOREM}"


@dataclass(frozen=True, slots=True)
class Step:
    """One application command. user is an index into the worker's pool (-1: the system)."""

    kind: str  # prompt | review | activate | reply | ranking
    user: int
    message_id: UUID | None = None
    parent_id: UUID | None = None
    ranked: tuple[UUID, ...] = ()


@dataclass(slots=True)
class _Node:
    id: UUID
    parent_id: UUID | None
    role: str
    depth: int
    author: int
    children: list[UUID] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TreePlan:
    tree_id: UUID
    steps: tuple[Step, ...]
    message_ids: frozenset[UUID]
    # parent id -> its rankable children in the majority (= expected consensus) order
    ranked_parents: dict[UUID, tuple[UUID, ...]]


class _Picker:
    """Round-robin over the pool, skipping excluded users."""

    def __init__(self, pool: int, start: int):
        self.pool = pool
        self.cursor = start

    def pick(self, exclude: set[int]) -> int:
        for _ in range(self.pool):
            user = self.cursor % self.pool
            self.cursor += 1
            if user not in exclude:
                return user
        raise ValueError(f"a pool of {self.pool} users is too small for this tree")


def plan_tree(key: str, config: TreeConfig, pool: int, start: int = 0) -> TreePlan:
    """The full life of one tree; key makes its ids unique."""
    picker = _Picker(pool, start)
    ids = (uuid5(NAMESPACE_URL, f"/bench/{key}/{n}") for n in range(1_000_000))
    tree_id = next(ids)
    author = picker.pick(set())
    nodes = {tree_id: _Node(tree_id, None, "prompter", 0, author)}
    steps = [Step("prompt", author, tree_id)]
    steps += _reviews(picker, nodes[tree_id], config.num_reviews_initial_prompt)
    steps.append(Step("activate", -1))

    need = config.goal_tree_size - 1
    queue = deque([tree_id])
    while need > 0:
        if not queue:
            raise ValueError("the tree shape cannot reach goal_tree_size")
        parent = nodes[queue.popleft()]
        if parent.depth >= config.max_tree_depth:
            continue
        limit = config.max_children_count
        if parent.role == "assistant":
            limit = min(limit, config.num_prompter_replies)
        kids = []
        for _ in range(min(limit, need)):
            role = "assistant" if parent.role == "prompter" else "prompter"
            kid = _Node(
                next(ids),
                parent.id,
                role,
                parent.depth + 1,
                picker.pick({parent.author} | {nodes[c].author for c in parent.children}),
            )
            nodes[kid.id] = kid
            parent.children.append(kid.id)
            kids.append(kid)
            steps.append(Step("reply", kid.author, kid.id, parent.id))
        for kid in kids:
            steps += _reviews(picker, kid, config.num_reviews_reply)
        queue.extend(k.id for k in kids)
        need -= len(kids)

    roles = {"assistant", "prompter"} if config.rank_prompter_replies else {"assistant"}
    ranked_parents = {}
    for node in list(nodes.values()):
        rankable = [nodes[c] for c in node.children if nodes[c].role in roles]
        if len(rankable) < 2:
            continue
        ranked_parents[node.id] = tuple(k.id for k in rankable)
        exclude = {k.author for k in rankable}
        for r in range(config.num_required_rankings):
            ranker = picker.pick(exclude)
            exclude.add(ranker)
            order = [k.id for k in rankable]
            if r % 2:  # dissenters swap the top two; the majority order wins consensus
                order[0], order[1] = order[1], order[0]
            steps.append(Step("ranking", ranker, parent_id=node.id, ranked=tuple(order)))
    return TreePlan(tree_id, tuple(steps), frozenset(nodes), ranked_parents)


def _reviews(picker: _Picker, node: _Node, count: int) -> list[Step]:
    exclude = {node.author}
    steps = []
    for _ in range(count):
        reviewer = picker.pick(exclude)
        exclude.add(reviewer)
        steps.append(Step("review", reviewer, node.id))
    return steps
