"""Stored topics are a contract: logs written before the layout moved still read.

The fixture logs in tests/fixtures/logs were written by the code before ``domain/*.py``
moved to ``domain/model/`` (topics ``domain.tree:ConversationTree.*``, ``domain.user:User.*``,
``domain.api_client:…``, ``domain.trained_model:…``), together with the OA export that
code produced from them. Today's code must decode every event, rebuild the read models,
keep writing under the same topics, and export byte for byte what the old code exported.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.utils import get_topic, resolve_topic

from api.bootstrap import open_app
from api.cli import main
from domain.model.actor import Actor
from domain.model.api_client import ApiClient
from domain.model.message_index import MessageIndex
from domain.model.task_index import TaskIndex
from domain.model.topics import MOVED_MODULES, nested_classes
from domain.model.trained_model import TrainedModel
from domain.model.tree import ConversationTree
from domain.model.user import User
from tests import log_helpers as logs

FIXTURES = Path(__file__).parent / "fixtures" / "logs"
INDEXED = get_topic(MessageIndex.MessageIndexed)  # added by opening an old log
TASK_INDEXED = get_topic(TaskIndex.TaskIndexed)  # added when the old log holds tasks
LOGS = ["v0-simulated", "v0-imported"]


def _unpack(name: str, folder: Path) -> Path:
    """The old log as the folder's log (on PostgreSQL: copied into the store)."""
    return logs.old_log(name, folder)


def _topics(folder: Path) -> set[str]:
    return {t for (t,) in logs.read(folder, "SELECT DISTINCT topic FROM stored_events")}


def test_every_moved_class_keeps_its_stored_topic() -> None:
    for aggregate in (ConversationTree, User, ApiClient, TrainedModel):
        stored_module = next(
            old for old, new in MOVED_MODULES.items() if new == aggregate.__module__
        )
        for cls in nested_classes(aggregate):
            topic = get_topic(cls)
            assert topic == f"{stored_module}:{cls.__qualname__}"
            assert resolve_topic(topic) is cls


@pytest.mark.parametrize("name", LOGS)
def test_an_old_log_decodes_replays_and_exports_as_before(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = _unpack(name, tmp_path / "data")
    old_topics = _topics(folder)
    assert old_topics and all(t.split(":")[0] in MOVED_MODULES for t in old_topics)
    app = open_app(folder)  # indexes the old log's messages (the message index is newer)
    try:
        events = [
            app.mapper.to_domain_event(n)
            for n in app.recorder.select_notifications(start=None, limit=100_000)
        ]
        issued = get_topic(User.TaskIssued) in old_topics
        indexes = {INDEXED, TASK_INDEXED} if issued else {INDEXED}
        assert events and {get_topic(type(e)) for e in events} == old_topics | indexes
    finally:
        app.close()

    assert main(["projections", "rebuild", "--data", str(folder)]) == 0
    out = tmp_path / "export.jsonl"
    assert (
        main(
            [
                "export",
                "oa",
                "--data",
                str(folder),
                "--out",
                str(out),
                "--state",
                "all",
                "--labels",
                "--include-deleted",
                "--include-spam",
                "--include-synthetic",
            ]
        )
        == 0
    )
    with gzip.open(FIXTURES / f"{name}.export.jsonl.gz") as f:
        assert out.read_bytes() == f.read()


def test_new_events_on_an_old_log_use_the_same_topics(tmp_path: Path) -> None:
    folder = _unpack("v0-simulated", tmp_path / "data")
    before = _topics(folder)
    app = open_app(folder)
    try:
        client_id, _ = app.register_client(name="after-the-move", trusted=True)
        user_id = app.ensure_user(client_id=client_id, auth_method="local", username="newcomer")
        tree = app.create_prompt(
            actor=Actor(user_id=user_id, client_id=client_id),
            text="written after the move",
            lang="en",
        )
        assert isinstance(tree.id, UUID)
    finally:
        app.close()
    assert _topics(folder) <= before | {"domain.user:User.ProfileUpdated", INDEXED, TASK_INDEXED}
