"""The baselines the benchmark compares against: the library's plain path and stock mapper.

NaiveApp is a stock eventsourcing Application on the same SQLite file layout: stock JSON
mapper, stock recorder (one transaction and one fsync per save), no aggregate cache. Each
command is repository.get (replaying the tree from the store) + one domain method + save,
which is what the eventsourcing docs and our reference measured at 1.0-1.5k commands/s
on small trees. The domain methods are the same ones DataEngine calls.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder, Mapper

from bench.mix import REVIEW_LABELS, Step, text_for
from domain.model.actor import SYSTEM, Actor
from domain.model.config import TreeConfig
from domain.model.tree import ConversationTree

NAIVE_FILE = "naive.sqlite"


class NaiveApp(Application):
    name = "naive"


def naive_env(folder: Path) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(folder / NAIVE_FILE),
        "SQLITE_LOCK_TIMEOUT": "30",
    }


def stock_mapper() -> Mapper:
    """The mapper a plain Application builds: stdlib json with UUID/datetime/Decimal tags."""
    transcoder = JSONTranscoder()
    Application.register_transcodings(None, transcoder)  # type: ignore[arg-type]
    return Mapper(transcoder=transcoder)


class NaiveDriver:
    """Runs one plan step the plain way: get, command, save."""

    def __init__(self, app: NaiveApp, config: TreeConfig, users: list[Actor]):
        self.app = app
        self.config = config
        self.users = users

    def __call__(self, tree_id: UUID, step: Step) -> int | None:
        actor = self.users[step.user] if step.user >= 0 else SYSTEM
        config = self.config
        if step.kind == "prompt":
            tree = ConversationTree.start(
                message_id=tree_id, text=text_for("prompt"), lang="en", actor=actor, config=config
            )
        else:
            tree = self.app.repository.get(tree_id)
            if step.kind == "review":
                tree.submit_labels(
                    message_id=step.message_id, labels=REVIEW_LABELS, actor=actor, config=config
                )
            elif step.kind == "activate":
                tree.activate(config=config)
            elif step.kind == "reply":
                tree.add_reply(
                    message_id=step.message_id,
                    parent_id=step.parent_id,
                    text=text_for("reply"),
                    actor=actor,
                    config=config,
                )
            elif step.kind == "ranking":
                tree.submit_ranking(
                    parent_id=step.parent_id,
                    ranked_message_ids=list(step.ranked),
                    actor=actor,
                    config=config,
                )
            else:
                raise ValueError(f"unknown step {step.kind}")
        recordings = self.app.save(tree)
        return recordings[-1].notification.id if recordings else None
