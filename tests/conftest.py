"""Shared fixtures: an in-memory DataEngine with a small config, a clock the test moves,
and helpers that drive a tree through its phases (review, growth, ranking).

Helpers go through the public DataEngine commands only, so every test also exercises
the load/decide/save path. Reviewers and rankers are fresh users unless a test names
them, so the self-labelling and one-review-per-user rules never get in the way by accident.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.errors import DomainError, ErrorCode
from domain.model.states import TreeState
from domain.model.tree import ConversationTree
from domain.service.application import DataEngine

# A real PostgreSQL for the store tests (started on first use; fixtures postgres, pg_url,
# each_store, and the whole-suite store switch below).
pytest_plugins = ["pg_fixture"]

# The store the whole suite runs on: "sqlite" (default) or "postgresql" (DATAENGINE_TEST_STORE,
# or --store). Under "postgresql" every test's log is a fresh schema of the session's
# PostgreSQL: DATAENGINE_STORE is set for whatever the test opens (open_app, the CLI, server
# subprocesses) and the in-memory kits below are built on it too. Tests of something only
# SQLite has (its file, its locks) are marked ``sqlite_only`` and run in the SQLite pass.
STORES = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store",
        choices=STORES,
        default=os.environ.get("DATAENGINE_TEST_STORE") or "sqlite",
        help="the event store the suite runs on (default $DATAENGINE_TEST_STORE or sqlite)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only(reason): tests SQLite itself; skipped in the PostgreSQL pass"
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"store under test: {config.getoption('--store')}"


@pytest.fixture(scope="session")
def store_under_test(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--store"))


@pytest.fixture(autouse=True)
def _store_for_each_test(
    request: pytest.FixtureRequest, store_under_test: str, monkeypatch: pytest.MonkeyPatch
) -> str | None:
    """Under the PostgreSQL pass: a fresh schema per test, named in DATAENGINE_STORE."""
    if store_under_test != "postgresql":
        return None
    marker = request.node.get_closest_marker("sqlite_only")
    if marker is not None:
        pytest.skip(f"SQLite only: {marker.args[0] if marker.args else 'tests SQLite itself'}")
    if "each_store" in request.fixturenames:
        return None  # the test picks its stores itself
    url = str(request.getfixturevalue("pg_url"))
    monkeypatch.setenv("DATAENGINE_STORE", url)
    return url


START = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)

# Goal 3: the root plus two accepted replies ends growth, so a ranking tree is cheap to build.
SMALL = {"goal_tree_size": 3, "min_goal_tree_size": 1}


class Clock:
    """The application's clock; tests move it instead of sleeping."""

    def __init__(self, start: datetime = START):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def names(events: Iterable[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def of(kind: type, events: Iterable[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def state_moves(events: Iterable[Any]) -> list[tuple[str, str]]:
    """(from, to) of every StateChanged (TreeHalted/TreeResumed included), in order."""
    return [
        (e.from_state, e.to_state) for e in events if isinstance(e, ConversationTree.StateChanged)
    ]


class Kit:
    """One application plus the steps most tests need."""

    def __init__(self, app: DataEngine, clock: Clock, api_key: str | None = None):
        self.app = app
        self.clock = clock
        self.client_id, self.api_key = app.register_client(name="tests", api_key=api_key)
        self._seq = itertools.count(1)

    @property
    def config(self) -> TreeConfig:
        return self.app.config

    # ------------------------------------------------------------------ people
    def user(self, name: str | None = None) -> Actor:
        name = name or f"user{next(self._seq)}"
        user_id = self.app.ensure_user(client_id=self.client_id, auth_method="local", username=name)
        return Actor(user_id, self.client_id)

    def text(self, prefix: str = "text") -> str:
        return f"{prefix} {next(self._seq)}"

    # ------------------------------------------------------------------ reading
    def tree(self, tree_id: UUID) -> ConversationTree:
        return self.app.get_tree(tree_id)

    def state(self, tree_id: UUID) -> TreeState:
        return self.tree(tree_id).state

    def message(self, tree_id: UUID, message_id: UUID):
        return self.tree(tree_id).messages[message_id]

    def version(self, aggregate_id: UUID) -> int:
        events = list(self.app.events.get(aggregate_id, desc=True, limit=1))
        return events[0].originator_version if events else 0

    def events(self, aggregate_id: UUID, after: int = 0) -> list[Any]:
        """Stored events of an aggregate after version ``after`` (read from the store)."""
        return list(self.app.events.get(aggregate_id, gt=after))

    @contextmanager
    def refused(self, code: ErrorCode, *aggregate_ids: UUID) -> Iterator[Any]:
        """Expect a DomainError with this code, and no new stored event on these aggregates."""
        before = {i: self.version(i) for i in aggregate_ids}
        with pytest.raises(DomainError) as info:
            yield info
        assert info.value.error_code == code, repr(info.value)
        assert {i: self.version(i) for i in aggregate_ids} == before
        # ...and the cached copy the next command will use has not moved either.
        assert {i: self.app.repository.get(i).version for i in aggregate_ids} == before

    # ------------------------------------------------------------------ steps
    def prompt(self, author: Actor | None = None, **kwargs: Any) -> UUID:
        kwargs.setdefault("text", self.text("prompt"))
        return self.app.create_prompt(actor=author or self.user(), **kwargs).id

    def label(
        self,
        tree_id: UUID,
        message_id: UUID,
        reviewer: Actor | None = None,
        spam: float = 0.0,
        **labels: float,
    ) -> Actor:
        reviewer = reviewer or self.user()
        self.app.submit_labels(
            actor=reviewer, tree_id=tree_id, message_id=message_id, labels={"spam": spam, **labels}
        )
        return reviewer

    def review(self, tree_id: UUID, message_id: UUID, spam_votes: int = 0) -> None:
        """Submit exactly the required number of reviews, ``spam_votes`` of them saying spam."""
        root = message_id == tree_id
        required = self.config.num_reviews_initial_prompt if root else self.config.num_reviews_reply
        for k in range(required):
            self.label(tree_id, message_id, spam=1.0 if k < spam_votes else 0.0)

    def growing_tree(self, author: Actor | None = None, **kwargs: Any) -> UUID:
        tree_id = self.prompt(author, **kwargs)
        self.review(tree_id, tree_id)
        self.app.activate_tree(tree_id=tree_id)
        assert self.state(tree_id) is TreeState.GROWING
        return tree_id

    def reply(
        self, tree_id: UUID, parent_id: UUID, author: Actor | None = None, **kwargs: Any
    ) -> UUID:
        kwargs.setdefault("text", self.text("reply"))
        return self.app.add_reply(
            actor=author or self.user(), tree_id=tree_id, parent_id=parent_id, **kwargs
        ).id

    def accepted_reply(
        self, tree_id: UUID, parent_id: UUID, author: Actor | None = None, **kwargs: Any
    ) -> UUID:
        message_id = self.reply(tree_id, parent_id, author, **kwargs)
        self.review(tree_id, message_id)
        assert self.message(tree_id, message_id).review_result is True
        return message_id

    def ranking_tree(self) -> tuple[UUID, list[UUID]]:
        """Root with two accepted assistant replies: goal 3 reached, so the tree ranks."""
        tree_id = self.growing_tree()
        replies = [self.accepted_reply(tree_id, tree_id) for _ in range(2)]
        assert self.state(tree_id) is TreeState.RANKING
        return tree_id, replies

    def tree_in(self, state: TreeState) -> UUID:
        """A fresh tree in one of the states a few commands reach."""
        if state is TreeState.RANKING:
            return self.ranking_tree()[0]
        if state in (TreeState.GROWING, TreeState.HALTED_BY_MODERATOR):
            tree_id = self.growing_tree()
            if state is TreeState.HALTED_BY_MODERATOR:
                self.app.halt_tree(tree_id=tree_id, actor=self.user())
        else:
            tree_id = self.prompt()
            if state is not TreeState.INITIAL_PROMPT_REVIEW:
                spam = 3 if state is TreeState.ABORTED_LOW_GRADE else 0
                self.review(tree_id, tree_id, spam_votes=spam)
        assert self.state(tree_id) is state
        return tree_id

    def rank(
        self, tree_id: UUID, parent_id: UUID, order: list[UUID], ranker: Actor | None = None
    ) -> Actor:
        ranker = ranker or self.user()
        self.app.submit_ranking(
            actor=ranker, tree_id=tree_id, parent_id=parent_id, ranked_message_ids=order
        )
        return ranker

    def issue(self, actor: Actor, task_type: str, *, ack: str | None = None, **kwargs: Any):
        task = self.app.issue_task(user_id=actor.user_id, task_type=task_type, **kwargs)
        if ack is not None:
            self.app.ack_task(user_id=actor.user_id, task_id=task.id, frontend_message_id=ack)
        return task


def kit_env(request: pytest.FixtureRequest) -> dict[str, str] | None:
    """A kit's store: in memory, or (PostgreSQL pass) a fresh schema of its own, so the
    domain tests also run through the PostgreSQL recorder and two kits never share a log."""
    if request.config.getoption("--store") != "postgresql":
        return None
    from api.storage.pg_url import postgres_env

    return postgres_env(request.getfixturevalue("postgres").url())


def small_config(**overrides: Any) -> TreeConfig:
    return TreeConfig(**{**SMALL, **overrides})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_kit(clock: Clock, request: pytest.FixtureRequest) -> Callable[..., Kit]:
    """Build a Kit on a fresh in-memory app; keyword arguments override the small config."""

    def build(**overrides: Any) -> Kit:
        return Kit(
            DataEngine(config=small_config(**overrides), clock=clock, env=kit_env(request)), clock
        )

    return build


@pytest.fixture
def kit(make_kit: Callable[..., Kit]) -> Kit:
    return make_kit()
