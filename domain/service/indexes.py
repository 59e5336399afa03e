"""What the log's indexes (message -> tree, task -> user) share: reading an entry, and
back-filling an index for a log written before it existed.

An entry is one event, written once and never changed, so a cached copy is always
current: ``entry`` answers from the cache without the fast-forward read that shared
servers make for every other cached aggregate, and reads the log only for an entry this
process has not seen (another process recorded it, or the cache let it go).

Each index is recorded with the events it indexes from the day it exists; a log written
before then holds events of the topic (TreeStarted, TaskIssued) with no index entry. On
opening, the application indexes them once, in batches of commands. The log's first
event of the topic is indexed last, so "the first one is indexed" means every one is,
even after an interrupted run: that one indexed read is the check, and a log that needs
nothing costs that read alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from domain.service.base import ServiceBase
from domain.service.unit_of_work import A, UnitOfWork

K = TypeVar("K")  # what one event of the topic gives the index (a tree id, a task and its user)


def entry(app: ServiceBase, cls: type[A], entry_id: UUID) -> A | None:
    """The index entry ``entry_id`` (None when there is none): cached, else from the log."""
    assert getattr(cls, "written_once", False), cls
    found = app._cached(cls, entry_id)
    return found if found is not None else app._peek(cls, entry_id)


def backfill(
    app: ServiceBase,
    *,
    topics: Sequence[str],
    key: Callable[[Any], K],
    indexed: Callable[[K], bool],
    index: Callable[[UnitOfWork, list[K]], None],
    batch_size: int = 500,
) -> int:
    """Index every event of ``topics`` in the log; returns how many it indexed (0 when the
    first one is indexed already).

    ``key`` turns a notification into what the index needs, ``indexed`` says whether a key
    is indexed (read from the log), ``index`` records a batch of keys in one unit of work
    (idempotently: a rerun after an interruption finds part of them indexed)."""
    select = app.recorder.select_notifications
    first = select(start=None, limit=1, topics=list(topics))
    if not first or indexed(key(first[0])):
        return 0
    keys = [key(n) for n in select(start=None, limit=1_000_000_000, topics=list(topics))]
    keys = keys[1:] + keys[:1]
    for start in range(0, len(keys), batch_size):
        batch: list[K] = keys[start : start + batch_size]

        def record(uow: UnitOfWork, batch: list[K] = batch) -> None:
            index(uow, batch)

        app.run((), record)
    return len(keys)
