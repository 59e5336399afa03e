"""A big event log, fast: a crowd that works through DataEngine commands, no read model.

The simulator (domain.service.simulator) asks the read model for every task, which makes
it the faithful demo and far too slow for millions of events. This crowd makes the same
events through the same commands (issue_task with a hand-out shaped payload, ack_task,
then create_prompt / add_reply / submit_labels / submit_ranking with the task id, or
nack_task; activate_tree as the prompt lottery; now and then an emoji, an edit, a
moderator's deletion) but picks its targets from the trees in the application's own
aggregate cache, so a step costs three commands and no query.

Trees follow Open-Assistant's lifecycle with the default rules (goal size 12, 3 reviews
a message, 3 rankings a parent): many grow at once, so the log interleaves them as a
live service would. Some people write spam that reviewers mostly flag (rejected), people
skip 4% of tasks, rankers see each reply's hidden quality through noise. The clock is
simulated (a few minutes a step) so the log spans months, like oasst2's. Seeded: the
same arguments give the same log.

    .venv/bin/python bench/crowd.py --data DIR --trees 1000 [--users 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from api.bootstrap import open_app  # noqa: E402
from domain.model import tree_rules as rules  # noqa: E402
from domain.model.actor import SYSTEM, Actor  # noqa: E402
from domain.model.config import TreeConfig  # noqa: E402
from domain.model.errors import DomainError  # noqa: E402
from domain.model.labels import (  # noqa: E402  # noqa: E402
    LABELS,
    LabelMode,
    MessageKind,
    disposition,
    mandatory_labels,
    valid_labels,
)
from domain.model.message import USER_EMOJIS, Role  # noqa: E402
from domain.model.states import TreeState as S  # noqa: E402
from domain.model.task_types import TaskType as T  # noqa: E402
from domain.service.simulator import WORDS  # noqa: E402  (the simulator's vocabulary)

ZERO_LABELS = (
    "lang_mismatch",
    "pii",
    "not_appropriate",
    "hate_speech",
    "sexual_content",
    "fails_task",
)


def crowd_config(max_active_trees: int = 100) -> TreeConfig:
    """OA's rules; more trees grow at once than OA's 10, so the log interleaves widely."""
    return TreeConfig(max_active_trees=max_active_trees)


class Crowd:
    def __init__(
        self,
        app: Any,
        *,
        users: int,
        seed: int,
        start: datetime | None = None,
        step_seconds: float = 120.0,
        spam_fraction: float = 0.1,
        skip_rate: float = 0.04,
    ):
        self.app, self.config = app, app.config
        self.rng = random.Random(seed)
        self.now = start or datetime(2023, 2, 1, tzinfo=UTC)
        self.step_seconds = step_seconds
        app.clock = lambda: self.now
        self.client, _ = app.register_client(name="crowd", api_key=f"crowd-{seed}")
        self.people = [
            app.ensure_user(
                client_id=self.client, auth_method="local", username=f"crowd-{seed}-{i}"
            )
            for i in range(users)
        ]
        self.spammers = {u for u in self.people if self.rng.random() < spam_fraction}
        self.skip_rate = skip_rate
        self.quality: dict[UUID, float] = {}
        self.spam: set[UUID] = set()
        self.open: list[UUID] = []  # trees not finished yet (in review, waiting, growing, ranking)
        self.ready = self.aborted = self.steps = self.counter = 0

    # ------------------------------------------------------------------ helpers
    def tree(self, tree_id: UUID) -> Any:
        """The cached aggregate, read only (the app saves through the same object)."""
        return self.app.repository.get(tree_id, deepcopy_from_cache=False)

    def actor(self, user_id: UUID) -> Actor:
        return Actor(user_id, self.client)

    def pick_user(self, excluded: set[UUID | None]) -> UUID | None:
        for _ in range(20):
            user = self.rng.choice(self.people)
            if user not in excluded:
                return user
        return None

    def text(self, user: UUID, what: str) -> tuple[str, bool]:
        self.counter += 1
        spam = user in self.spammers and self.rng.random() < 0.8
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(6, 40)))
        return f"{'asdf qwerty ' if spam else ''}{what} {self.counter}: {words}", spam

    def conversation(self, tree: Any, message: Any) -> list[dict[str, Any]]:
        return [
            {
                "message_id": str(m.id),
                "text": m.text,
                "lang": m.lang,
                "is_assistant": m.role is Role.ASSISTANT,
                "synthetic": m.synthetic,
            }
            for m in reversed(rules.path_to_root(tree, message))
        ]

    # ------------------------------------------------------------------ one task
    def task(
        self,
        user: UUID,
        kind: T,
        payload: dict[str, Any],
        act: Any,
        tree_id: UUID | None = None,
        message_id: UUID | None = None,
    ) -> None:
        """Hand out, then skip or acknowledge and answer, as a front end would."""
        app = self.app
        task = app.issue_task(
            user_id=user, task_type=kind, tree_id=tree_id, message_id=message_id, payload=payload
        )
        if kind is not T.INITIAL_PROMPT and self.rng.random() < self.skip_rate:
            app.nack_task(user_id=user, task_id=task.id, reason="not for me")
            return
        frontend_id = f"crowd-{task.id}"
        app.ack_task(user_id=user, task_id=task.id, frontend_message_id=frontend_id)
        try:
            act(task.id, frontend_id)
        except DomainError:
            pass  # the tree moved on between hand-out and answer; a person would move on too

    def prompt(self) -> None:
        user = self.rng.choice(self.people)
        text, spam = self.text(user, "prompt")

        def act(task_id: UUID, frontend_id: str) -> None:
            outcome = self.app.create_prompt(
                actor=self.actor(user), text=text, frontend_message_id=frontend_id, task_id=task_id
            )
            self.quality[outcome.id] = 0.05 if spam else self.rng.random()
            if spam:
                self.spam.add(outcome.id)
            self.open.append(outcome.id)

        self.task(user, T.INITIAL_PROMPT, {"type": "initial_prompt", "hint": None}, act)

    def review(self, tree: Any, message: Any) -> None:
        excluded = {message.user_id, *message.reviews}
        user = self.pick_user(excluded)
        if user is None:
            return
        if message.is_root:
            kind, label_kind, p_full = (
                T.LABEL_INITIAL_PROMPT,
                MessageKind.INITIAL_PROMPT,
                self.config.p_full_labeling_review_prompt,
            )
        elif message.role is Role.ASSISTANT:
            kind, label_kind, p_full = (
                T.LABEL_ASSISTANT_REPLY,
                MessageKind.ASSISTANT_REPLY,
                self.config.p_full_labeling_review_reply_assistant,
            )
        else:
            kind, label_kind, p_full = (
                T.LABEL_PROMPTER_REPLY,
                MessageKind.PROMPTER_REPLY,
                self.config.p_full_labeling_review_reply_prompter,
            )
        mode = LabelMode.SIMPLE if self.rng.random() > p_full else LabelMode.FULL
        valid = list(valid_labels(self.config, label_kind, mode))
        payload: dict[str, Any] = {
            "type": kind.value,
            "message_tree_id": str(tree.id),
            "conversation": {"messages": self.conversation(tree, message)},
            "message_id": str(message.id),
            "mode": mode.value,
            "disposition": disposition(mode).value,
            "valid_labels": valid,
            "mandatory_labels": list(mandatory_labels(self.config, label_kind)),
            "labels": [
                {
                    "name": n,
                    "widget": LABELS[n].widget.value,
                    "display_text": LABELS[n].display_text,
                    "help_text": LABELS[n].help_text,
                }
                for n in valid
            ],
        }
        if message.is_root:
            payload["prompt"] = message.text
        else:
            payload["reply"] = message.text
        labels = self.labels(message.id, valid)

        def act(task_id: UUID, frontend_id: str) -> None:
            self.app.submit_labels(
                actor=self.actor(user),
                tree_id=tree.id,
                message_id=message.id,
                labels=labels,
                task_id=task_id,
            )

        self.task(user, kind, payload, act, tree.id, message.id)

    def labels(self, message_id: UUID, valid: list[str]) -> dict[str, float]:
        spam = (message_id in self.spam) != (self.rng.random() < 0.08)
        quality = self.quality.get(message_id, 0.5)
        labels = {}
        for name in valid:
            if name == "spam":
                labels[name] = 1.0 if spam else 0.0
            elif name in ZERO_LABELS:
                labels[name] = 0.0
            elif name in ("quality", "helpfulness"):
                noisy = min(1.0, max(0.0, quality + self.rng.gauss(0, 0.15)))
                labels[name] = round(noisy * 4) / 4
            else:
                labels[name] = self.rng.choice((0.0, 0.25, 0.5, 0.75, 1.0))
        return labels

    def reply(self, tree: Any, parent: Any) -> None:
        excluded = {tree.messages[c].user_id for c in parent.children}
        user = self.pick_user(excluded)
        if user is None:
            return
        kind = T.ASSISTANT_REPLY if parent.role is Role.PROMPTER else T.PROMPTER_REPLY
        payload = {
            "type": kind.value,
            "message_tree_id": str(tree.id),
            "conversation": {"messages": self.conversation(tree, parent)},
            "parent_message_id": str(parent.id),
        }
        text, spam = self.text(user, kind.value)

        def act(task_id: UUID, frontend_id: str) -> None:
            outcome = self.app.add_reply(
                actor=self.actor(user),
                tree_id=tree.id,
                parent_id=parent.id,
                text=text,
                frontend_message_id=frontend_id,
                task_id=task_id,
            )
            self.quality[outcome.id] = 0.05 if spam else self.rng.random()
            if spam:
                self.spam.add(outcome.id)

        self.task(user, kind, payload, act, tree.id, parent.id)

    def rank(self, tree: Any, parent: Any) -> None:
        children = rules.rankable_children(tree, parent, self.config)
        excluded = {c.user_id for c in children} | {r for r, _, _ in parent.rankings}
        user = self.pick_user(excluded)
        if user is None:
            return
        ids = sorted(c.id for c in children)
        self.rng.shuffle(ids)
        payload = {
            "type": T.RANK_ASSISTANT_REPLIES.value,
            "message_tree_id": str(tree.id),
            "conversation": {"messages": self.conversation(tree, parent)},
            "ranking_parent_id": str(parent.id),
            "replies": [tree.messages[i].text for i in ids],
            "reply_messages": [self.conversation(tree, tree.messages[i])[-1] for i in ids],
            "reveal_synthetic": False,
        }
        noisy = {i: self.quality.get(i, 0.5) + self.rng.gauss(0, 0.25) for i in ids}
        ranked = sorted(ids, key=lambda i: -noisy[i])

        def act(task_id: UUID, frontend_id: str) -> None:
            self.app.submit_ranking(
                actor=self.actor(user),
                tree_id=tree.id,
                parent_id=parent.id,
                ranked_message_ids=ranked,
                task_id=task_id,
            )

        self.task(user, T.RANK_ASSISTANT_REPLIES, payload, act, tree.id, parent.id)

    # ------------------------------------------------------------------ the crowd
    def extendible(self, tree: Any) -> list[Any]:
        out = []
        for m in tree.messages.values():
            if m.deleted or m.review_result is not True or m.depth >= tree.max_depth:
                continue
            limit = tree.max_children_count
            if m.role is Role.ASSISTANT:
                limit = min(limit, self.config.num_prompter_replies)
            if len(rules.active_children(tree, m)) < limit:
                out.append(m)
        return out

    def work_on(self, tree: Any) -> None:
        state = tree.state
        if state is S.INITIAL_PROMPT_REVIEW:
            self.review(tree, tree.root)
        elif state is S.GROWING:
            waiting = [m for m in tree.messages.values() if m.under_review]
            parents = self.extendible(tree) if rules.tree_size(tree) < tree.goal_tree_size else []
            if waiting and (not parents or self.rng.random() < 0.7):
                self.review(tree, self.rng.choice(waiting))
            elif parents:
                self.reply(tree, self.rng.choice(parents))
        elif state is S.RANKING:
            parents = [
                p
                for p in rules.rankable_parents(tree, self.config)
                if len(p.rankings) < self.config.num_required_rankings
            ]
            if parents:
                self.rank(tree, self.rng.choice(parents))

    def extras(self, tree: Any) -> None:
        """Now and then: an emoji click, an edit by the author, a moderator's deletion."""
        r = self.rng.random()
        messages = list(tree.messages.values())
        message = self.rng.choice(messages)
        if message.deleted:
            return
        try:
            if r < 0.03:
                user = self.rng.choice(self.people)
                self.app.toggle_emoji(
                    tree_id=tree.id,
                    message_id=message.id,
                    emoji=self.rng.choice(sorted(USER_EMOJIS)),
                    actor=self.actor(user),
                )
            elif r < 0.032 and message.user_id is not None:
                self.app.edit_message(
                    tree_id=tree.id,
                    message_id=message.id,
                    text=message.text + " (edited)",
                    actor=self.actor(message.user_id),
                )
            elif r < 0.033 and not message.is_root:
                self.app.delete_message(tree_id=tree.id, message_id=message.id, actor=SYSTEM)
        except DomainError:
            pass

    def step(self, trees_wanted: int) -> None:
        self.steps += 1
        self.now += timedelta(seconds=self.rng.expovariate(1 / self.step_seconds))
        pipeline = len(self.open)
        # Keep about twice the growing trees in the pipeline; a little overshoot lets the run
        # finish even if a few trees get stuck (all their parents full or deleted).
        if (
            pipeline < 2 * self.config.max_active_trees
            and self.ready + pipeline < 1.05 * trees_wanted + 10
        ):
            self.prompt()
            return
        if not self.open:
            return
        index = self.rng.randrange(len(self.open))
        tree = self.tree(self.open[index])
        if tree.state is S.PROMPT_LOTTERY_WAITING:
            growing = sum(1 for t in self.open if self.tree(t).state is S.GROWING)
            if growing < self.config.max_active_trees:
                self.app.activate_tree(tree_id=tree.id)
        else:
            self.work_on(tree)
            self.extras(tree)
        if tree.state in (S.READY_FOR_EXPORT, S.ABORTED_LOW_GRADE, S.HALTED_BY_MODERATOR):
            self.open[index] = self.open[-1]
            self.open.pop()
            if tree.state is S.READY_FOR_EXPORT:
                self.ready += 1
            else:
                self.aborted += 1

    def run(self, trees_wanted: int, progress: bool = True) -> None:
        bar = tqdm(total=trees_wanted, unit="tree", desc="crowd", disable=not progress)
        while self.ready < trees_wanted:
            before = self.ready
            self.step(trees_wanted)
            if self.ready != before:
                bar.update(self.ready - before)
        bar.close()


def build(
    folder: Path, trees: int, users: int | None = None, seed: int = 0, progress: bool = True
) -> tuple[Crowd, float]:
    """Fill the store in ``folder`` until ``trees`` trees are ready for export."""
    app = open_app(folder, crowd_config(), synchronous="NORMAL")  # a scratch log: no fsync
    crowd = Crowd(app, users=users or max(30, trees // 3), seed=seed)
    started = time.perf_counter()
    crowd.run(trees, progress)
    return crowd, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--trees", type=int, default=1000)
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    crowd, seconds = build(Path(args.data), args.trees, args.users, args.seed)
    head = crowd.app.recorder.max_notification_id()
    print(
        f"{crowd.ready} trees ready, {crowd.aborted} aborted, {crowd.steps} steps, "
        f"{head} events in {seconds:.0f} s ({head / seconds:,.0f} events/s)"
    )


if __name__ == "__main__":
    main()
