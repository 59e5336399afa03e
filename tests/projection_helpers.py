"""Shared scaffolding for the projection tests: an in-memory app followed by a runner."""

from __future__ import annotations

import sqlite3
from uuid import UUID

from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.service.application import DataEngine
from projections.log import AppLog
from projections.runner import ProjectionRunner

OK = {"spam": 0.0, "lang_mismatch": 0.0}
SPAM = {"spam": 1.0, "lang_mismatch": 0.0}


class World:
    """An app with users a..h, one client, and a runner that catches up on demand."""

    def __init__(self, tmp_path, **config):
        defaults = dict(
            goal_tree_size=3, min_goal_tree_size=1, max_children_count=2, num_required_rankings=2
        )
        self.app = DataEngine(config=TreeConfig(**(defaults | config)))
        self.client, _ = self.app.register_client(name="test")
        self.users = {}
        for name in "abcdefgh":
            user_id = self.app.ensure_user(
                client_id=self.client, auth_method="local", username=name
            )
            self.users[name] = Actor(user_id, self.client)
        self.runner = ProjectionRunner(AppLog(self.app), tmp_path / "rm.sqlite")

    def uid(self, name: str) -> UUID:
        return self.users[name].user_id

    @property
    def conn(self) -> sqlite3.Connection:
        self.runner.catch_up(self.runner.log.head())
        return self.runner.readmodel.reader()

    def prompt(self, author: str, text: str = "a prompt") -> UUID:
        return self.app.create_prompt(actor=self.users[author], text=text).id

    def reply(self, author: str, tree: UUID, parent: UUID, text: str = "a reply") -> UUID:
        return self.app.add_reply(
            actor=self.users[author], tree_id=tree, parent_id=parent, text=text
        ).id

    def label(self, reviewers: str, tree: UUID, message: UUID, labels=OK) -> None:
        for name in reviewers:
            self.app.submit_labels(
                actor=self.users[name], tree_id=tree, message_id=message, labels=labels
            )

    def growing_tree(self, author: str = "a", reviewers: str = "bcd") -> UUID:
        tree = self.prompt(author, f"prompt by {author} {reviewers}")
        self.label(reviewers, tree, tree)
        self.app.activate_tree(tree_id=tree)
        return tree


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every table's rows in a fixed order."""
    tables = [
        t
        for (t,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
    ]
    tables = [t for t in tables if t != "log_identity"]  # which log, not what it holds
    return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
