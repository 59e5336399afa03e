"""The message index: a write finds a message's tree in the log (never in a read model),
message ids are unique across trees, and logs written before the index get indexed."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID, uuid4

import pytest
from eventsourcing.utils import get_topic

from api.bootstrap import open_app, store_env
from domain.model.actor import Actor
from domain.model.errors import DomainError, ErrorCode, MessageNotFoundError
from domain.model.message_index import MessageIndex, index_id_for
from domain.model.tree import ConversationTree
from domain.service.application import DataEngine
from tests import log_helpers as logs

INDEXED = get_topic(MessageIndex.MessageIndexed)


def test_labels_find_the_tree_of_a_message_from_the_log(kit) -> None:
    tree_id = kit.growing_tree()
    reply = kit.reply(tree_id, tree_id)
    assert kit.app.tree_of_message(tree_id) == tree_id
    assert kit.app.tree_of_message(reply) == tree_id
    before = kit.version(tree_id)
    kit.app.submit_labels(actor=kit.user(), message_id=reply, labels={"spam": 0.0})  # no tree id
    assert kit.version(tree_id) == before + 1
    with pytest.raises(MessageNotFoundError):
        kit.app.tree_of_message(uuid4())


def test_two_trees_never_hold_the_same_message_id(kit) -> None:
    a, b = kit.growing_tree(), kit.growing_tree()
    taken = kit.reply(a, a)
    with kit.refused(ErrorCode.MESSAGE_ALREADY_EXISTS, b, index_id_for(taken)):
        kit.reply(b, b, message_id=taken)
    with kit.refused(ErrorCode.MESSAGE_ALREADY_EXISTS, index_id_for(taken)):
        kit.prompt(message_id=taken)
    with kit.refused(ErrorCode.MESSAGE_ALREADY_EXISTS, a, index_id_for(b)):
        kit.reply(a, a, message_id=b)  # a root is a message too
    assert kit.app.tree_of_message(taken) == a
    assert b in kit.tree(b).messages and taken not in kit.tree(b).messages


def _export(root: UUID, reply: UUID, state: str = "ready_for_export") -> dict:
    return {
        "message_tree_id": str(root),
        "tree_state": state,
        "prompt": {
            "message_id": str(root),
            "text": f"prompt {root}",
            "role": "prompter",
            "lang": "en",
            "review_result": True,
            "replies": [{"message_id": str(reply), "text": "an answer", "role": "assistant"}],
        },
    }


def test_concurrent_claims_are_decided_by_the_log(tmp_path: Path) -> None:
    """Two processes (two applications, two caches) add the same message id to different
    trees: the second save conflicts on the index entry and its retry refuses."""
    first, second = open_app(tmp_path), open_app(tmp_path)
    try:
        a, b, taken = uuid4(), uuid4(), uuid4()
        report = first.import_batch(
            [_export(a, uuid4(), "growing"), _export(b, uuid4(), "growing")]
        )
        assert report.imported == 2, report.failed
        second.get_tree(b)  # cached in the second process before the first writes
        user = Actor(None, None)
        first.add_reply(actor=user, tree_id=a, parent_id=a, text="one", message_id=taken)
        with pytest.raises(DomainError) as refused:
            second.add_reply(actor=user, tree_id=b, parent_id=b, text="two", message_id=taken)
        assert refused.value.error_code == ErrorCode.MESSAGE_ALREADY_EXISTS
        assert second.tree_of_message(taken) == a
        assert taken not in second.get_tree(b).messages
        # the same race between two imports: the later batch reports the tree, saves the rest
        clash, fine = uuid4(), uuid4()
        first.import_batch([_export(uuid4(), clash)])
        report = second.import_batch([_export(fine, uuid4()), _export(uuid4(), clash)])
        assert report.imported == 1 and len(report.failed) == 1
        assert second.tree_of_message(fine) == fine
    finally:
        first.close()
        second.close()


def test_import_reports_a_tree_whose_message_another_tree_holds(kit) -> None:
    tree_id = kit.growing_tree()
    taken = kit.reply(tree_id, tree_id)

    good, clash = uuid4(), uuid4()
    report = kit.app.import_batch([_export(good, uuid4()), _export(clash, taken)])
    assert report.imported == 1 and [f[0] for f in report.failed] == [str(clash)]
    assert "already exists" in report.failed[0][1]
    assert kit.app.tree_of_message(good) == good
    with pytest.raises(MessageNotFoundError):
        kit.app.tree_of_message(clash)


def _old_log(name: str, folder: Path) -> Path:
    """The old log as the folder's log (on PostgreSQL: copied into the store)."""
    return logs.old_log(name, folder)


def _trees(app: DataEngine) -> list[ConversationTree]:
    topic = get_topic(ConversationTree.TreeStarted)
    created = app.recorder.select_notifications(start=None, limit=100_000, topics=[topic])
    return [app.get_tree(n.originator_id) for n in created]


@pytest.mark.parametrize("name", ["v0-simulated", "v0-imported"])
def test_a_log_written_before_the_index_is_indexed_once(name: str, tmp_path: Path) -> None:
    folder = _old_log(name, tmp_path / "data")
    app = DataEngine(env=store_env(folder))  # not open_app: that would index on opening
    try:
        trees = _trees(app)
        reply = next(m for t in trees for m in t.messages if m != t.id)
        with pytest.raises(MessageNotFoundError):
            app.tree_of_message(reply)  # not indexed yet
        # an interrupted first run (it fails after its first batch) leaves the check unmet
        real, calls = app.run, []

        def failing_after_one(*args, **kwargs):
            if calls:
                raise OSError("interrupted")
            calls.append(1)
            return real(*args, **kwargs)

        app.run = failing_after_one  # type: ignore[method-assign]
        with pytest.raises(OSError):
            app.index_messages(batch_size=1)
        app.run = real  # type: ignore[method-assign]
        assert app.index_messages() == len(trees)
        assert app.index_messages() == 0  # done: one read says so
    finally:
        app.close()
    app = open_app(folder)  # what every entry point does: nothing left to index
    try:
        assert app.index_messages() == 0
        for tree in trees:
            for message_id in tree.messages:
                assert app.tree_of_message(message_id) == tree.id
        head = app.recorder.max_notification_id()
        indexed = app.recorder.select_notifications(start=None, limit=100_000, topics=[INDEXED])
        assert len(indexed) == sum(len(t.messages) for t in trees)
        assert app.recorder.max_notification_id() == head
    finally:
        app.close()
