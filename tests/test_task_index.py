"""The task index: an ack or nack that names only its task finds the task's user in the
log (never in a read model), and logs written before the index get indexed once."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import pytest
from eventsourcing.utils import get_topic

from api.bootstrap import open_app, store_env
from domain.model.errors import TaskNotFoundError
from domain.model.message_index import MessageIndex, index_id_for
from domain.model.task_index import TaskIndex, task_index_id_for
from domain.model.user import User
from domain.service.application import DataEngine
from tests import log_helpers as logs

INDEXED = get_topic(TaskIndex.TaskIndexed)


def test_a_task_is_indexed_with_its_issue(kit) -> None:
    tree_id = kit.growing_tree()
    actor = kit.user()
    head = kit.app.recorder.max_notification_id()
    task = kit.issue(actor, "assistant_reply", tree_id=tree_id, message_id=tree_id)
    assert kit.app.task_owner(task.id) == actor.user_id  # the kit runs no projection
    new = kit.app.recorder.select_notifications(start=head + 1, limit=10)
    # one transaction: the index entry first, then the user's TaskIssued
    assert [n.topic for n in new] == [INDEXED, get_topic(User.TaskIssued)]
    assert new[0].originator_id == task_index_id_for(task.id)
    with pytest.raises(TaskNotFoundError):
        kit.app.task_owner(uuid4())


def test_ack_and_nack_by_the_indexed_owner(kit) -> None:
    tree_id = kit.growing_tree()
    actor = kit.user()
    task = kit.issue(actor, "assistant_reply", tree_id=tree_id, message_id=tree_id)
    owner = kit.app.task_owner(task.id)
    kit.app.ack_task(user_id=owner, task_id=task.id, frontend_message_id="f1")
    other = kit.issue(actor, "assistant_reply", tree_id=tree_id, message_id=tree_id)
    kit.app.nack_task(user_id=kit.app.task_owner(other.id), task_id=other.id)
    user = kit.app.repository.get(actor.user_id)
    assert user.tasks[task.id].frontend_message_id == "f1" and user.tasks[other.id].skipped


def test_the_entry_is_made_as_eventsourcing_makes_it_stamped_as_its_task() -> None:
    # index_entry.created skips Aggregate._create's introspection: same aggregate, same event
    task_id, user_id, when = uuid4(), uuid4(), datetime(2024, 5, 1, tzinfo=UTC)
    fast = TaskIndex.record(task_id=task_id, user_id=user_id, timestamp=when)
    slow = TaskIndex._create(
        TaskIndex.TaskIndexed,
        id=task_index_id_for(task_id),
        task_id=task_id,
        user_id=user_id,
        timestamp=when,
    )
    assert type(fast) is TaskIndex and vars(fast) == vars(slow)
    assert fast.pending_events == slow.pending_events and fast.created_on == when
    message_id, tree_id = uuid4(), uuid4()
    entry = MessageIndex.record(message_id=message_id, tree_id=tree_id, timestamp=when)
    assert vars(entry) == vars(
        MessageIndex._create(
            MessageIndex.MessageIndexed,
            id=index_id_for(message_id),
            message_id=message_id,
            tree_id=tree_id,
            timestamp=when,
        )
    )
    assert TaskIndex.record(task_id=task_id, user_id=user_id).created_on.tzinfo is not None


def test_entry_ids_are_uuid5_of_what_they_index() -> None:
    # index_entry.derived_id skips uuid5's overheads: the same ids, as UUIDs that behave alike
    for key in [uuid4() for _ in range(500)] + [UUID(int=0), UUID(int=2**128 - 1)]:
        for made, path in (
            (task_index_id_for(key), "/task-index/"),
            (index_id_for(key), "/message-index/"),
        ):
            expected = uuid5(NAMESPACE_URL, f"{path}{key}")
            assert made == expected and str(made) == str(expected) and hash(made) == hash(expected)
            assert made.version == 5 and made.variant == expected.variant
            assert copy.deepcopy(made) == expected and pickle.loads(pickle.dumps(made)) == expected


@pytest.mark.parametrize("fastforward", ["n", "y"])  # "y": shared servers' loads
def test_the_owner_of_a_task_issued_here_is_never_read_another_is_read_once(
    make_kit, monkeypatch, fastforward: str
) -> None:
    # an entry never changes, so even where every load of a cached aggregate reads its
    # newer events (several server processes on one log), an entry's cached copy answers
    monkeypatch.setenv("AGGREGATE_CACHE_FASTFORWARD", fastforward)
    kit = make_kit()
    assert kit.app.repository.fastforward is (fastforward == "y")
    tree_id = kit.growing_tree()
    actor = kit.user()
    head = kit.app.recorder.max_notification_id()
    task = kit.issue(actor, "assistant_reply", tree_id=tree_id, message_id=tree_id)
    new = kit.app.recorder.select_notifications(start=head + 1, limit=2)
    indexed, issued = (kit.app.mapper.to_domain_event(n) for n in new)
    assert indexed.timestamp == issued.timestamp  # one transaction, the application's clock
    reads: list[UUID] = []
    select_events = kit.app.recorder.select_events

    def counted(originator_id: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(originator_id)
        return select_events(originator_id, *args, **kwargs)

    kit.app.recorder.select_events = counted  # type: ignore[method-assign]
    assert kit.app.task_owner(task.id) == actor.user_id
    assert reads == []  # recorded by this process: cached with the save
    # as if another process had issued it (or another runner moved the log): from the log
    kit.app.forget_moved(None)
    assert kit.app.task_owner(task.id) == actor.user_id
    assert [str(r) for r in reads] == [str(task_index_id_for(task.id))]
    assert kit.app.task_owner(task.id) == actor.user_id and len(reads) == 1


def _old_log(folder: Path) -> Path:
    """The old log as the folder's log (on PostgreSQL: copied into the store)."""
    return logs.old_log("v0-simulated", folder)


def test_a_log_written_before_the_index_is_indexed_once(tmp_path: Path) -> None:
    folder = _old_log(tmp_path / "data")
    app = DataEngine(env=store_env(folder))  # not open_app: that would index on opening
    try:
        issued = [
            (app.mapper.to_domain_event(n).task_id, UUID(str(n.originator_id)))
            for n in app.recorder.select_notifications(
                start=None, limit=1_000_000, topics=[get_topic(User.TaskIssued)]
            )
        ]
        assert len(issued) > 1, "the fixture log holds tasks"
        with pytest.raises(TaskNotFoundError):
            app.task_owner(issued[0][0])  # not indexed yet
        real, calls = app.run, []

        def failing_after_one(*args, **kwargs):
            if calls:
                raise OSError("interrupted")
            calls.append(1)
            return real(*args, **kwargs)

        app.run = failing_after_one  # type: ignore[method-assign]
        with pytest.raises(OSError):
            app.index_tasks(batch_size=1)  # an interrupted first run leaves the check unmet
        app.run = real  # type: ignore[method-assign]
        assert app.index_tasks() == len(issued)
        assert app.index_tasks() == 0
    finally:
        app.close()
    app = open_app(folder)  # what every entry point does: nothing left to index
    try:
        head = app.recorder.max_notification_id()
        assert app.index_tasks() == 0
        assert all(app.task_owner(task_id) == user_id for task_id, user_id in issued)
        indexed = app.recorder.select_notifications(start=None, limit=1_000_000, topics=[INDEXED])
        assert len(indexed) == len(issued)
        assert app.recorder.max_notification_id() == head
    finally:
        app.close()
