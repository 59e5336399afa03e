"""Audit views of the log: a tree's full history, a tree as it was, and read-model replay.

``history`` reads one aggregate's rows straight from ``stored_events`` (the primary key
index on (originator_id, originator_version)) because the auditor needs each event's log
position (its rowid), which the application's event store does not hand out.
Rows that no longer decode (a damaged log) are listed, not skipped: an audit view must
show what is there.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import msgspec
from eventsourcing.persistence import StoredEvent

from domain.model.catalogue import topics_of
from domain.model.errors import TreeNotFoundError
from domain.model.tree import ConversationTree

# A tree's events, under the stored topic or the class's current module path.
TREE_TOPICS = tuple(topic + "." for topic in topics_of(ConversationTree))
Names = Callable[[UUID | None, str], str | None]  # (id, "user"|"client") -> a name or None


def short(value: object) -> str:
    return str(value)[:8] if value is not None else "-"


def _quote(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def _ids(ids: Iterable[object]) -> str:
    return " > ".join(short(i) for i in ids)


def _labels(e: Any) -> str:
    labels = ", ".join(f"{name}={value:g}" for name, value in e.labels.items())
    return f"labels on {short(e.message_id)}: {labels} ({e.kind})"


def _review(e: Any) -> str:
    verdict = "accepted" if e.accepted else "rejected"
    return f"review of {short(e.message_id)}: {verdict} (score {e.score:.3g}, {e.review_count} reviews)"


def _ranking(e: Any) -> str:
    order = "not rankable" if e.not_rankable else _ids(e.ranked_message_ids)
    return f"ranking of replies to {short(e.parent_id)}: {order}"


def _ranks(e: Any) -> str:
    return "; ".join(f"{short(parent)}: {_ids(order)}" for parent, order in e.ranks.items())


def _state(e: Any) -> str:
    return f"state {e.from_state} -> {e.to_state} ({e.reason})"


def _emoji(e: Any) -> str:
    return f"emoji {e.emoji} {'added to' if e.added else 'removed from'} {short(e.message_id)}"


# One line per tree event class saying what it did; tests/test_audit.py checks that every
# tree event of the catalogue (domain.model.catalogue) has one.
SUMMARIES: dict[type, Callable[[Any], str]] = {
    ConversationTree.TreeStarted: lambda e: (
        f"prompt {short(e.originator_id)} ({e.lang}): {_quote(e.text)} -> {e.state}"
    ),
    ConversationTree.ReplyAdded: lambda e: (
        f"reply {short(e.message_id)} ({e.role}) to {short(e.parent_id)}: {_quote(e.text)}"
    ),
    ConversationTree.LabelsSubmitted: _labels,
    ConversationTree.ReviewDecided: _review,
    ConversationTree.RankingSubmitted: _ranking,
    ConversationTree.StateChanged: _state,
    ConversationTree.TreeHalted: _state,
    ConversationTree.TreeResumed: _state,
    ConversationTree.TreeScored: lambda e: f"scored: {_ranks(e)}",
    ConversationTree.RanksImported: lambda e: f"ranks imported: {_ranks(e)}",
    ConversationTree.ScoringFailed: lambda e: f"scoring failed: {e.error}",
    ConversationTree.MessageDeleted: lambda e: (
        f"deleted {', '.join(short(i) for i in e.message_ids)} ({e.reason})"
    ),
    ConversationTree.MessagesPurged: lambda e: (
        f"purged {', '.join(short(i) for i in e.message_ids)} ({e.reason})"
    ),
    ConversationTree.ReportsProcessed: lambda e: f"reports on {short(e.message_id)} processed",
    ConversationTree.MessageUndeleted: lambda e: (
        f"undeleted {', '.join(short(i) for i in e.message_ids)}"
    ),
    ConversationTree.MessageEdited: lambda e: (
        f"edited {short(e.message_id)} (revision {e.revision}): {_quote(e.text)}"
    ),
    ConversationTree.EmojiToggled: _emoji,
    ConversationTree.ImagesAttached: lambda e: (
        f"images on {short(e.message_id)}: {', '.join(i.sha256[:12] for i in e.images)}"
    ),
}


def summarize(event: Any) -> str:
    """One line saying what a tree event did (the class name for an event without one)."""
    summary = SUMMARIES.get(type(event))
    return summary(event) if summary is not None else type(event).__name__


# ---------------------------------------------------------------------------- history
def history(
    log: sqlite3.Connection, mapper: Any, tree_id: UUID, names: Names | None = None
) -> list[dict[str, Any]]:
    """Every stored event of a tree in log order, with position, actor and a summary."""
    factory, log.text_factory = log.text_factory, bytes  # a damaged topic must not stop us
    try:
        rows = log.execute(
            "SELECT rowid, originator_version, topic, state FROM stored_events "
            "WHERE originator_id = ? ORDER BY rowid",
            (tree_id.hex,),
        ).fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" not in str(e):
            raise
        rows = []
    finally:
        log.text_factory = factory
    topics = [
        bytes(t).decode("utf-8", "replace") if isinstance(t, bytes) else str(t)
        for _, _, t, _ in rows
    ]
    if not rows or not any(t.startswith(TREE_TOPICS) for t in topics):
        raise TreeNotFoundError(f"tree {tree_id} not found")
    entries = []
    for (position, version, _, state), topic in zip(rows, topics):
        entry: dict[str, Any] = {
            "position": position,
            "version": version,
            "event": topic.rsplit(".", 1)[-1],
        }
        try:
            event = mapper.to_domain_event(
                StoredEvent(
                    originator_id=tree_id, originator_version=version, topic=topic, state=state
                )
            )
        except Exception as e:  # a damaged row: show it, do not hide the rest
            entry.update(
                time=None,
                user_id=None,
                client_id=None,
                user=None,
                client=None,
                summary=f"undecodable event ({type(e).__name__}: {e})",
                data=None,
            )
            entries.append(entry)
            continue
        user_id, client_id = getattr(event, "user_id", None), getattr(event, "client_id", None)
        entry.update(
            time=event.timestamp.isoformat(),
            user_id=str(user_id) if user_id else None,
            user=names(user_id, "user") if names and user_id else None,
            client_id=str(client_id) if client_id else None,
            client=names(client_id, "client") if names and client_id else None,
            summary=summarize(event),
            data={
                k: v
                for k, v in msgspec.to_builtins(event).items()
                if k not in ("originator_id", "originator_version", "originator_topic")
            },
        )
        entries.append(entry)
    return entries


def format_history(entries: list[dict[str, Any]]) -> Iterable[str]:
    yield f"{'position':>9} {'ver':>4}  {'time':<32} {'actor':<32} {'event':<17} summary"
    for e in entries:
        if e["user_id"] or e["client_id"]:
            user = e["user"] or short(e["user_id"])
            actor = f"{user} via {e['client'] or short(e['client_id'])}"
        else:
            actor = "system"
        yield (
            f"{e['position']:>9} {e['version']:>4}  {e['time'] or '?':<32} {actor:<32} "
            f"{e['event']:<17} {e['summary']}"
        )


# ---------------------------------------------------------------------------- as of
def tree_view(tree: ConversationTree) -> dict[str, Any]:
    """``as_dict`` plus what an auditor asks about: reviews, labels, rankings, provenance."""
    view = tree.as_dict()
    view.update(
        time=tree.modified_on.isoformat(),
        created_at=tree.created_on.isoformat(),
        origin=tree.origin,
        halted_from=tree.halted_from.value if tree.halted_from else None,
        won_lottery_at=tree.won_lottery_at.isoformat() if tree.won_lottery_at else None,
    )
    for entry in view["messages"]:
        m = tree.messages[UUID(entry["id"])]
        entry.update(
            created_at=m.created_at.isoformat(),
            client_id=str(m.client_id) if m.client_id else None,
            revision=m.revision,
            review_score=m.review_score,
            images=[
                {"id": str(i.id), "sha256": i.sha256, "width": i.width, "height": i.height}
                for i in m.images
            ],
            reviews=[
                {"user_id": str(u) if u else None, "labels": labels}
                for u, labels in m.reviews.items()
            ],
            free_labels=[
                {"user_id": str(u) if u else None, "labels": labels}
                for u, labels in m.free_labels.items()
            ],
            rankings=[
                {
                    "user_id": str(u) if u else None,
                    "ranked": [str(i) for i in ids],
                    "not_rankable": not_rankable,
                }
                for u, ids, not_rankable in m.rankings
            ],
        )
    return view


def tree_as_of(
    app: Any,
    log: sqlite3.Connection | None,
    tree_id: UUID,
    version: int | None = None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """The tree as it was at a version or a moment, with the log position of that version."""
    current = app.get_tree(tree_id)
    if version is not None and not 1 <= version <= current.version:
        raise TreeNotFoundError(f"tree {tree_id} has versions 1..{current.version}, not {version}")
    tree = app.get_tree(tree_id, version=version, as_of=as_of)
    view = tree_view(tree)
    view["current_version"] = current.version
    view["position"] = None
    if log is not None:
        row = log.execute(
            "SELECT rowid FROM stored_events WHERE originator_id = ? AND originator_version = ?",
            (tree_id.hex, tree.version),
        ).fetchone()
        view["position"] = row[0] if row else None
    return view


# ---------------------------------------------------------------------------- replay
class ReadModelRebuilder(Protocol):
    """What `audit replay` needs from a read model.

    position(folder): how far the read model kept in ``folder`` has followed the log.
    rebuild(data, target, upto): build it afresh in ``target`` from the log in ``data``,
    up to and including position ``upto``.
    rows(folder): every fact it holds, as hashable tuples, in any order.
    """

    name: str

    def position(self, folder: Path) -> int: ...

    def rebuild(self, data: Path, target: Path, upto: int) -> None: ...

    def rows(self, folder: Path) -> Iterable[tuple]: ...


@dataclass(slots=True)
class ReplayResult:
    name: str
    position: int
    rows: int
    only_live: list[tuple] = field(default_factory=list)  # samples
    only_rebuilt: list[tuple] = field(default_factory=list)
    differences: int = 0
    error: str | None = None

    @property
    def same(self) -> bool:
        return self.differences == 0 and self.error is None


def replay(
    data: Path,
    rebuilders: Iterable[ReadModelRebuilder],
    workdir: Path | None = None,
    sample: int = 10,
    on_start: Callable[[str], None] | None = None,
) -> list[ReplayResult]:
    """Rebuild each read model in a temporary folder and compare it with the live one."""
    results = []
    with tempfile.TemporaryDirectory(prefix="dataengine-replay-", dir=workdir) as tmp:
        for model in rebuilders:
            if on_start:
                on_start(model.name)
            upto = model.position(data)
            live = Counter(model.rows(data))
            if model.position(data) != upto:
                results.append(
                    ReplayResult(
                        model.name,
                        upto,
                        sum(live.values()),
                        error=(
                            "the live read model advanced while it was read; stop the server or retry"
                        ),
                    )
                )
                continue
            target = Path(tmp) / model.name
            target.mkdir(parents=True)
            model.rebuild(data, target, upto)
            rebuilt = Counter(model.rows(target))
            extra, lost = live - rebuilt, rebuilt - live
            results.append(
                ReplayResult(
                    model.name,
                    upto,
                    sum(live.values()),
                    only_live=list(extra.elements())[:sample],
                    only_rebuilt=list(lost.elements())[:sample],
                    differences=sum(extra.values()) + sum(lost.values()),
                )
            )
    return results
