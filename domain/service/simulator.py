"""A simulated crowd: people who request tasks and answer them, as a front end would.

Every action goes through the same application commands the HTTP API uses: hand-out,
ack with a front-end id, then create_prompt / add_reply / submit_labels / submit_ranking
with the task id, or nack. Some people write spam (reviewers mostly flag it, so it is
rejected), people skip now and then, and rankers see each reply's hidden quality through
noise, so rankings agree only partly. It runs until the wanted number of trees is ready
for export. The read model is brought up to date synchronously before every hand-out,
so a run is reproducible from its seed.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from domain.model.actor import Actor
from domain.model.errors import DomainError, TaskNotAvailableError
from domain.model.task_types import TaskType
from domain.service.handout import HandedOut, Handout
from domain.service.processes import prompt_lottery
from projections.runner import ProjectionRunner

T = TaskType
WORDS = (
    "how",
    "why",
    "explain",
    "write",
    "poem",
    "code",
    "python",
    "river",
    "history",
    "sun",
    "recipe",
    "bread",
    "travel",
    "music",
    "theory",
    "garden",
    "planet",
    "story",
    "list",
    "tips",
)


@dataclass
class Person:
    user_id: UUID
    actor: Actor
    spammer: bool
    skip_rate: float


@dataclass
class Stats:
    steps: int = 0
    tasks: int = 0
    skipped: int = 0
    refused: int = 0
    unavailable: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


class Simulator:
    def __init__(
        self,
        app: Any,
        runner: ProjectionRunner,
        *,
        trees: int,
        users: int,
        seed: int,
        lang: str = "en",
        spam_fraction: float = 0.1,
        skip_rate: float = 0.04,
        rank_noise: float = 0.25,
        label_noise: float = 0.08,
    ):
        if users < 5:
            raise ValueError("the simulation needs at least 5 users (3 reviews by others, rankers)")
        self.app, self.runner, self.lang = app, runner, lang
        self.trees_wanted = trees
        self.rng = random.Random(seed)
        self.rank_noise, self.label_noise = rank_noise, label_noise
        # A key derived from the seed and the log's length: a fresh store and a seed give
        # the same ids every run; a second run on the same store gets its own client.
        key = hashlib.sha256(f"simulator/{seed}/{runner.log.head()}".encode()).hexdigest()
        self.client_id, _ = app.register_client(name="simulator", api_key=key)
        self.people = []
        for i in range(users):
            user_id = app.ensure_user(
                client_id=self.client_id, auth_method="local", username=f"sim-{i:04d}"
            )
            self.people.append(
                Person(
                    user_id,
                    Actor(user_id, self.client_id),
                    spammer=self.rng.random() < spam_fraction,
                    skip_rate=skip_rate * self.rng.uniform(0.5, 1.5),
                )
            )
        self.handout = Handout(
            app,
            runner.readmodel.reader,
            self.rng,
            before_read=lambda: runner.catch_up(runner.log.head()),
        )
        self.quality: dict[str, float] = {}
        self.spam: set[str] = set()
        self.counter = 0
        self.stats = Stats()

    # ------------------------------------------------------------------ reading
    def tree_states(self) -> dict[str, int]:
        self.runner.catch_up(self.runner.log.head())
        return dict(
            self.runner.readmodel.reader()
            .execute(
                "SELECT state, count(*) FROM trees WHERE lang = ? GROUP BY state ORDER BY state",
                (self.lang,),
            )
            .fetchall()
        )

    def _ready_and_live(self) -> tuple[int, int]:
        states = self.tree_states()
        dead = states.get("aborted_low_grade", 0) + states.get("halted_by_moderator", 0)
        return states.get("ready_for_export", 0), sum(states.values()) - dead

    # ------------------------------------------------------------------ acting
    def run(
        self, *, max_steps: int | None = None, progress: Callable[[int], None] | None = None
    ) -> Stats:
        max_steps = max_steps or 400 * self.trees_wanted + 2000
        ready, live = self._ready_and_live()
        while ready < self.trees_wanted and self.stats.steps < max_steps:
            self.step(want_prompt=live < self.trees_wanted)
            prompt_lottery(self.app, self.runner.readmodel.reader(), self.rng)
            new_ready, live = self._ready_and_live()
            if progress is not None and new_ready != ready:
                progress(new_ready)
            ready = new_ready
        return self.stats

    def step(self, want_prompt: bool = False) -> None:
        self.stats.steps += 1
        person = self.rng.choice(self.people)
        requested = T.INITIAL_PROMPT if want_prompt else T.RANDOM
        try:
            task = self.handout.request(person.user_id, requested, self.lang)
        except TaskNotAvailableError:
            self.stats.unavailable += 1
            return
        except DomainError:
            self.stats.refused += 1  # e.g. too many pending tasks
            return
        self.stats.tasks += 1
        self.stats.by_type[task.type] = self.stats.by_type.get(task.type, 0) + 1
        if task.type != T.INITIAL_PROMPT and self.rng.random() < person.skip_rate:
            self.app.nack_task(user_id=person.user_id, task_id=task.id, reason="not for me")
            self.stats.skipped += 1
            return
        self.counter += 1
        frontend_id = f"sim-{self.counter}"
        self.app.ack_task(user_id=person.user_id, task_id=task.id, frontend_message_id=frontend_id)
        try:
            self._answer(person, task, frontend_id)
        except DomainError:
            # The world moved between hand-out and answer (e.g. the tree left growing):
            # a real front end would show the error and the person would move on.
            self.stats.refused += 1

    def _text(self, person: Person, what: str) -> tuple[str, bool, float]:
        spam = person.spammer and self.rng.random() < 0.8
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(4, 12)))
        text = f"{'asdf qwerty ' if spam else ''}{what} {self.counter}: {words}"
        quality = 0.05 if spam else self.rng.random()
        return text, spam, quality

    def _remember(self, message_id: UUID, spam: bool, quality: float) -> None:
        self.quality[str(message_id)] = quality
        if spam:
            self.spam.add(str(message_id))

    def _answer(self, person: Person, task: HandedOut, frontend_id: str) -> None:
        app, p, kind = self.app, task.payload, TaskType(task.type)
        if kind is T.INITIAL_PROMPT:
            text, spam, quality = self._text(person, "prompt")
            outcome = app.create_prompt(
                actor=person.actor,
                text=text,
                lang=self.lang,
                frontend_message_id=frontend_id,
                task_id=task.id,
            )
            self._remember(outcome.id, spam, quality)
        elif kind in (T.ASSISTANT_REPLY, T.PROMPTER_REPLY):
            text, spam, quality = self._text(person, kind.value)
            outcome = app.add_reply(
                actor=person.actor,
                tree_id=task.task.tree_id,
                parent_id=task.task.message_id,
                text=text,
                lang=self.lang,
                frontend_message_id=frontend_id,
                task_id=task.id,
            )
            self._remember(outcome.id, spam, quality)
        elif kind in (T.RANK_ASSISTANT_REPLIES, T.RANK_PROMPTER_REPLIES):
            ids = [m["message_id"] for m in p["reply_messages"]]
            noisy = {i: self.quality.get(i, 0.5) + self.rng.gauss(0, self.rank_noise) for i in ids}
            ranked = sorted(ids, key=lambda i: -noisy[i])
            app.submit_ranking(
                actor=person.actor,
                tree_id=task.task.tree_id,
                parent_id=task.task.message_id,
                ranked_message_ids=[UUID(i) for i in ranked],
                task_id=task.id,
            )
        else:
            app.submit_labels(
                actor=person.actor,
                tree_id=task.task.tree_id,
                message_id=task.task.message_id,
                task_id=task.id,
                labels=self._labels(str(task.task.message_id), p["valid_labels"]),
            )

    def _labels(self, message_id: str, valid: list[str]) -> dict[str, float]:
        spam = message_id in self.spam
        if self.rng.random() < self.label_noise:
            spam = not spam
        quality = self.quality.get(message_id, 0.5)
        labels = {}
        for name in valid:
            if name == "spam":
                labels[name] = 1.0 if spam else 0.0
            elif name in (
                "lang_mismatch",
                "pii",
                "not_appropriate",
                "hate_speech",
                "sexual_content",
                "fails_task",
            ):
                labels[name] = 0.0
            elif name in ("quality", "helpfulness"):
                labels[name] = round(min(1.0, max(0.0, quality + self.rng.gauss(0, 0.15))) * 4) / 4
            else:
                labels[name] = self.rng.choice((0.0, 0.25, 0.5, 0.75, 1.0))
        return labels


def run_simulation(
    app: Any,
    runner: ProjectionRunner,
    *,
    trees: int,
    users: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    **options: Any,
) -> tuple[Simulator, Stats, float]:
    sim = Simulator(app, runner, trees=trees, users=users, seed=seed, **options)
    started = time.perf_counter()
    stats = sim.run(progress=progress)
    return sim, stats, time.perf_counter() - started
