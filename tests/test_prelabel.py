"""Pre-labelling: a tiny model's candidates enter the trees through the people's command path,
respect the tree limits, are not added twice, and then go to people for review and ranking."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a typo'd model id fails at once, no DNS retries
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import json
import random
from pathlib import Path
from uuid import UUID

import pytest

from api.bootstrap import load_config, open_app
from api.cli import main
from api.storage.logdb import log_location
from domain.model.actor import Actor
from domain.model.errors import TaskNotAvailableError
from domain.model.message import Role
from domain.model.states import TreeState
from domain.model.task_types import TaskType as T
from domain.service.handout import Handout
from projections.log import SQLiteLog
from projections.runner import ProjectionRunner
from projections.store import READMODEL_FILE
from tests.store_helpers import fresh_store
from training.prelabel import (
    PRELABEL_CLIENT_KEY,
    Generator,
    PrelabelOptions,
    Target,
    frontend_id,
    prelabel,
    room,
)
from training.tiny import init_tiny

OK = {"spam": 0.0, "lang_mismatch": 0.0}
FAST = PrelabelOptions(n=2, max_new_tokens=8, seed=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return init_tiny(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def generator(tiny) -> Generator:
    return Generator(str(tiny))


class Store:
    """A folder store whose config.toml the CLI reads too, with a client and people."""

    def __init__(self, folder: Path, **config: int):
        folder.mkdir(parents=True, exist_ok=True)
        settings = {
            "goal_tree_size": 3,
            "min_goal_tree_size": 1,
            "max_children_count": 2,
            "num_required_rankings": 2,
        } | config
        (folder / "config.toml").write_text(
            "[tree]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
        )
        self.folder = folder
        self.open()
        self.client, _ = self.app.register_client(name="people")
        self._n = 0

    def open(self) -> None:
        self.app = open_app(self.folder, load_config(self.folder))

    def reopen(self) -> None:
        """After the CLI wrote through its own app, read with a fresh cache."""
        self.app.close()
        self.open()

    def person(self) -> Actor:
        self._n += 1
        user_id = self.app.ensure_user(
            client_id=self.client, auth_method="local", username=f"p{self._n}"
        )
        return Actor(user_id, self.client)

    def review(self, tree_id: UUID, message_id: UUID) -> None:
        for _ in range(3):
            self.app.submit_labels(
                actor=self.person(), tree_id=tree_id, message_id=message_id, labels=OK
            )

    def growing_tree(self, text: str) -> UUID:
        tree_id = self.app.create_prompt(actor=self.person(), text=text).id
        self.review(tree_id, tree_id)
        self.app.activate_tree(tree_id=tree_id)
        assert self.app.get_tree(tree_id).state is TreeState.GROWING
        return tree_id

    def human_reply(self, tree_id: UUID, text: str) -> UUID:
        return self.app.add_reply(
            actor=self.person(), tree_id=tree_id, parent_id=tree_id, text=text
        ).id

    def head(self) -> int:
        return SQLiteLog(log_location(self.folder)).head()

    def model_replies(self, tree_id: UUID) -> list:
        tree = self.app.get_tree(tree_id)
        return [m for m in tree.messages.values() if m.synthetic]


def cli_prelabel(store: Store, model: str, capsys, *extra: str) -> dict:
    code = main(
        [
            "prelabel",
            "--data",
            str(store.folder),
            "--model",
            model,
            "--n",
            "2",
            "--max-new-tokens",
            "8",
            "--seed",
            "3",
            "--json",
            *extra,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_prelabel_adds_what_fits_once(tmp_path, tiny, capsys):
    store = Store(tmp_path / "data")
    store.app.register_model(name="tiny-base", path=str(tiny), kind="base")
    open_tree = store.growing_tree("How do I sort a list in Python?")
    full = store.growing_tree("What is the capital of France?")
    one_left = store.growing_tree("Explain photosynthesis briefly.")
    for k in range(2):
        store.human_reply(full, f"a person's answer {k}")
    store.human_reply(one_left, "Plants make sugar from light.")
    store.app.close()

    summary = cli_prelabel(store, "tiny-base", capsys)
    # The full parent is no target; the parent with one free slot takes one of two.
    assert summary["prompts_seen"] == 2
    assert summary["added"] == 3
    assert summary["refused"] == {"max_children": 1}
    assert summary["model_name"] == "tiny-base" and summary["path"] == str(tiny)

    store.open()
    replies = store.model_replies(open_tree)
    assert len(replies) == 2
    assert {m.model_name for m in replies} == {"tiny-base"}
    assert all(
        m.role is Role.ASSISTANT
        and m.parent_id == open_tree
        and m.text.strip() == m.text
        and m.text
        for m in replies
    )
    assert len({m.text for m in replies}) == 2
    assert len({m.user_id for m in replies}) == 2  # one model user per candidate slot
    assert {m.frontend_message_id for m in replies} == {
        frontend_id("tiny-base", open_tree, k) for k in range(2)
    }
    user = store.app.get_user(replies[0].user_id)
    assert (user.auth_method, user.display_name, user.show_on_leaderboard) == (
        "model",
        "tiny-base",
        False,
    )
    assert store.app.authenticate(PRELABEL_CLIENT_KEY) is None  # a public key, disabled
    assert store.model_replies(full) == []
    assert len(store.model_replies(one_left)) == 1
    store.app.close()

    head = store.head()
    again = cli_prelabel(store, "tiny-base", capsys)
    assert again["added"] == 0 and store.head() == head  # nothing new in the log


def test_stale_targets_are_rechecked_against_the_tree(tmp_path, tiny, generator):
    """Targets listed before a parent filled up (or already pre-labelled) add nothing."""
    store = Store(tmp_path / "data", goal_tree_size=4, max_children_count=3)
    first = store.growing_tree("Write a haiku about rain.")
    second = store.growing_tree("Thanks, that helps!")
    done = prelabel(store.app, [Target(first, first)], str(tiny), FAST, generator=generator)
    assert done.added == 2 and done.refused == {}
    fit, _ = room(store.app.get_tree(first), first, store.app.config)
    assert fit == 1  # still open: a third child would fit

    for k in range(3):
        store.human_reply(second, f"answer {k}")
    head = store.head()
    stale = prelabel(
        store.app,
        [Target(first, first), Target(second, second)],
        str(tiny),
        FAST,
        generator=generator,
    )
    assert stale.added == 0 and stale.generated == 0 and stale.device == ""  # no generation ran
    assert stale.already_present == 2  # the first parent's slots were filled by the first run
    assert stale.refused == {"max_children": 2}  # the second parent filled up meanwhile
    assert store.head() == head
    # A wider run fills the slot left at the first parent, and only that one.
    wider = prelabel(
        store.app,
        [Target(first, first)],
        str(tiny),
        PrelabelOptions(n=4, max_new_tokens=8),
        generator=generator,
    )
    assert wider.already_present == 2 and wider.added == 1
    assert wider.refused == {"max_children": 1}
    assert len(store.model_replies(first)) == 3


def test_goal_size_bounds_a_tree_with_free_child_slots(tmp_path, tiny, generator):
    store = Store(tmp_path / "data", goal_tree_size=3, max_children_count=3)
    tree = store.growing_tree("Write a haiku about rain.")
    summary = prelabel(
        store.app,
        [Target(tree, tree)],
        str(tiny),
        PrelabelOptions(n=3, max_new_tokens=8),
        generator=generator,
    )
    # Room for three children, but root + 2 replies under review already reach the goal.
    assert summary.added == 2 and summary.refused == {"tree_full": 1}
    assert summary.generated == 2 and summary.new_tokens > 0
    assert room(store.app.get_tree(tree), tree, store.app.config) == (0, "tree_full")


def _label_everything(store: Store, handout: Handout, reviewer: Actor) -> set[UUID]:
    reviewed = set()
    while True:
        try:
            task = handout.request(reviewer.user_id, T.LABEL_ASSISTANT_REPLY)
        except TaskNotAvailableError:
            return reviewed
        store.app.ack_task(
            user_id=reviewer.user_id, task_id=task.id, frontend_message_id=f"ack-{task.id}"
        )
        labels = {name: 0.0 for name in task.payload["mandatory_labels"]}
        store.app.submit_labels(
            actor=reviewer,
            tree_id=task.task.tree_id,
            message_id=task.task.message_id,
            labels=labels,
            task_id=task.id,
        )
        reviewed.add(task.task.message_id)


def test_model_replies_go_to_review_and_ranking(tmp_path, tiny, capsys):
    store = Store(tmp_path / "data", goal_tree_size=4, max_children_count=3)
    store.app.register_model(name="tiny-sft", path=str(tiny), kind="sft")
    tree = store.growing_tree("How do I sort a list in Python?")
    human = store.human_reply(tree, "Use sorted(items).")
    store.review(tree, human)
    store.app.close()
    assert cli_prelabel(store, "tiny-sft", capsys)["added"] == 2

    store.open()
    ours = {m.id for m in store.model_replies(tree)}
    runner = ProjectionRunner(SQLiteLog(log_location(store.folder)), store.folder / READMODEL_FILE)
    handout = Handout(
        store.app,
        runner.readmodel.reader,
        random.Random(0),
        before_read=lambda: runner.catch_up(runner.log.head()),
    )
    for _ in range(3):
        assert _label_everything(store, handout, store.person()) == ours
    assert all(m.review_result for m in store.model_replies(tree))
    assert store.app.get_tree(tree).state is TreeState.RANKING

    texts = {m.text for m in store.app.get_tree(tree).messages.values() if m.parent_id == tree}
    for _ in range(2):
        ranker = store.person()
        task = handout.request(ranker.user_id, T.RANK_ASSISTANT_REPLIES)
        assert set(task.payload["replies"]) == texts
        assert task.payload["reveal_synthetic"] is False  # a person's reply is among them
        first, second = sorted(ours)
        store.app.ack_task(
            user_id=ranker.user_id, task_id=task.id, frontend_message_id=f"ack-{task.id}"
        )
        store.app.submit_ranking(
            actor=ranker,
            tree_id=tree,
            parent_id=tree,
            task_id=task.id,
            ranked_message_ids=[first, human, second],
        )
    assert store.app.get_tree(tree).state is TreeState.READY_FOR_EXPORT
    runner.close()
    store.app.close()

    assert main(["models", "list", "--data", str(store.folder), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "tiny-sft" and row["replies"] == 2 and row["acceptance_rate"] == 1.0
    assert row["human_pairs"] == 2 and row["wins"] == 1 and row["win_rate"] == 0.5
    assert row["mean_rank"] == 1.0  # ranks 0 and 2


def test_prelabel_cli_rejects_bad_input(tmp_path, tiny, capsys, request, monkeypatch):
    store = Store(tmp_path / "data")
    store.growing_tree("What is the capital of France?")
    store.app.close()
    folder = str(store.folder)
    assert main(["prelabel", "--data", folder, "--model", str(tiny), "--n", "0"]) == 2
    assert "n must be >= 1" in capsys.readouterr().err
    assert main(["prelabel", "--data", folder, "--model", str(tiny), "--temperature", "0"]) == 2
    assert "temperature" in capsys.readouterr().err
    missing = str(tmp_path / "no-such-model")
    assert main(["prelabel", "--data", folder, "--model", missing]) == 2
    assert "cannot load model" in capsys.readouterr().err
    fresh_store(request, monkeypatch)  # a folder without a log: on PostgreSQL, an empty schema
    assert main(["prelabel", "--data", str(tmp_path / "empty"), "--model", str(tiny)]) == 2
    assert "no event store" in capsys.readouterr().err


def test_generated_text_loses_control_characters_but_keeps_lines() -> None:
    from training.generated_text import clean_text

    assert clean_text(" a\x00b\x07c\nd\te \x1b[31m ") == "abc\nd\te [31m"
    assert clean_text("\x00\x00") == ""
