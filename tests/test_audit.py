"""Audit: history, as-of views, the log's hash chain, tamper detection, replay plumbing.

The store is built through DataEngine commands (on SQLite, or on the PostgreSQL store of the
PostgreSQL pass), then damaged with plain SQL on the log's table the way an intruder (or a bad
disk) would (tests/log_helpers.py); the CLI must name exactly the damaged event.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

import projections.audit.record as digest_mod
from api.bootstrap import open_app
from api.cli import main
from api.storage.logdb import Location, log_location
from domain.model.actor import Actor
from domain.model.catalogue import event_classes
from domain.model.config import TreeConfig
from domain.model.tree import ConversationTree
from projections.audit.chain import GENESIS, Text, canonical, chain, encode_value
from projections.audit.history import SUMMARIES, history, replay, summarize
from projections.audit.record import AuditStore, open_log, record
from projections.audit.verify import verify
from tests import log_helpers as logs

CONFIG = TreeConfig(goal_tree_size=3, min_goal_tree_size=1)
LABELS = {"spam": 0.0, "lang_mismatch": 0.0}


@dataclass
class Snapshot:
    """Tree A right after one command: what an as-of view must show for that moment."""

    version: int
    moment: datetime
    state: str
    messages: int
    reviews: int
    rankings: int


class Store:
    def __init__(self, folder: Path):
        self.folder = folder
        self.db = log_location(folder)  # the events.sqlite file, or the PostgreSQL store
        self.app = open_app(folder, CONFIG)
        client_id, _ = self.app.register_client(name="web")
        self.users = [
            Actor(
                self.app.ensure_user(client_id=client_id, auth_method="local", username=f"user{i}"),
                client_id,
            )
            for i in range(12)
        ]
        self.snapshots: list[Snapshot] = []
        self.tree_a: UUID | None = None

    def step(self, command: Any, **kwargs: Any) -> Any:
        result = command(**kwargs)
        if self.tree_a is not None:
            tree = self.app.get_tree(self.tree_a)
            time.sleep(0.002)  # the moment lies strictly between two commands' events
            self.snapshots.append(
                Snapshot(
                    tree.version,
                    datetime.now(UTC),
                    tree.state.value,
                    len(tree.messages),
                    sum(len(m.reviews) for m in tree.messages.values()),
                    sum(len(m.rankings) for m in tree.messages.values()),
                )
            )
            time.sleep(0.002)
        return result

    def review(self, tree_id: UUID, message_id: UUID, reviewers: list[Actor]) -> None:
        for reviewer in reviewers:
            self.step(
                self.app.submit_labels,
                actor=reviewer,
                tree_id=tree_id,
                message_id=message_id,
                labels=LABELS,
            )

    def build(self) -> None:
        """Tree A from prompt to export, tree B reviewed once, tree C just a prompt."""
        u, app = self.users, self.app
        self.tree_a = app.create_prompt(
            actor=u[0], text="How do tides work?", frontend_message_id="a"
        ).id
        self.step(lambda: None)
        self.review(self.tree_a, self.tree_a, u[1:4])
        self.step(app.activate_tree, tree_id=self.tree_a)
        replies = []
        for author, fid in ((u[4], "a1"), (u[5], "a2")):
            replies.append(
                self.step(
                    app.add_reply,
                    actor=author,
                    tree_id=self.tree_a,
                    parent_id=self.tree_a,
                    text=f"The moon pulls ({fid}).",
                    frontend_message_id=fid,
                ).id
            )
            self.review(self.tree_a, replies[-1], u[6:9])
        for ranker in u[9:12]:
            self.step(
                app.submit_ranking,
                actor=ranker,
                tree_id=self.tree_a,
                parent_id=self.tree_a,
                ranked_message_ids=replies,
            )
        self.step(
            app.toggle_emoji, tree_id=self.tree_a, message_id=replies[0], emoji="+1", actor=u[1]
        )
        self.tree_b = app.create_prompt(
            actor=u[1], text="Why is the sky blue?", frontend_message_id="b"
        ).id
        app.submit_labels(actor=u[2], tree_id=self.tree_b, message_id=self.tree_b, labels=LABELS)
        self.tree_c = app.create_prompt(
            actor=u[2], text="Name three rivers.", frontend_message_id="c"
        ).id
        self.replies = replies

    def more(self) -> None:
        self.app.create_prompt(actor=self.users[3], text="Later prompt", frontend_message_id="d")
        self.app.submit_labels(
            actor=self.users[4], tree_id=self.tree_b, message_id=self.tree_b, labels=LABELS
        )

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        return logs.read(self.db, statement, params)

    def change(self, statement: str, params: tuple = ()) -> int:
        """A changing statement on the log (SQLite-flavoured SQL, on either store)."""
        return logs.write(self.db, statement, params)

    def row_of(self, tree_id: UUID, version: int) -> int:
        return logs.position_of(self.db, tree_id, version)

    def flip(self, position: int, offset: int = 10) -> None:
        logs.flip_byte(self.db, position, offset)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    # Checkpoints every 4 positions, so damage is located inside a block, not at the head.
    monkeypatch.setattr(digest_mod, "CHECKPOINT_EVERY", 4)
    s = Store(tmp_path)
    s.build()
    return s


def cli(capsys: pytest.CaptureFixture[str], folder: Path, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--data", str(folder)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def cli_json(capsys: pytest.CaptureFixture[str], folder: Path, *argv: str) -> tuple[int, Any]:
    code, out, _ = cli(capsys, folder, *argv, "--json")
    return code, json.loads(out)


def spec_digest(db: Location, upto: int | None = None) -> tuple[int, str]:
    """The chain as the documentation spells it, written out independently of projections.audit.chain."""

    def text(value: str) -> bytes:
        data = value.encode()
        return b"\x03" + len(data).to_bytes(4, "big") + data

    def integer(value: int) -> bytes:
        return b"\x01" + value.to_bytes(8, "big", signed=True)

    link, last = bytes(32), 0
    for pos, oid, ver, topic, state in logs.rows(db):
        if upto is not None and pos > upto:
            break
        row = (
            integer(pos)
            + text(oid)
            + integer(ver)
            + text(topic)
            + b"\x04"
            + len(state).to_bytes(4, "big")
            + state
        )
        link, last = hashlib.sha256(link + row).digest(), pos
    return last, link.hex()


# ---------------------------------------------------------------------------- encoding
def test_canonical_encoding_is_the_documented_one() -> None:
    row = (7, Text(b"ab"), 2, Text(b"t"), b"\x00\xff")
    expected = (
        b"\x01"
        + (7).to_bytes(8, "big")
        + b"\x03\x00\x00\x00\x02ab"
        + b"\x01"
        + (2).to_bytes(8, "big")
        + b"\x03\x00\x00\x00\x01t"
        + b"\x04\x00\x00\x00\x02\x00\xff"
    )
    assert canonical(*row) == expected
    assert canonical(7, "ab", 2, "t", b"\x00\xff") == expected  # str is TEXT too
    assert b"".join(map(encode_value, row)) == expected
    # A value keeping its printed form but changing storage class changes the bytes.
    assert canonical(7, "ab", 2, "t", Text(b"\x00\xff")) != expected
    assert canonical(7, "ab", "2", "t", b"\x00\xff") != expected
    assert canonical(7, None, 2, "t", b"") != canonical(7, "", 2, "t", b"")
    assert chain([]) == GENESIS
    assert chain([row]) == hashlib.sha256(GENESIS + expected).digest()


# ---------------------------------------------------------------------------- history
def test_history_lists_every_event_in_log_order(store: Store, capsys) -> None:
    code, data = cli_json(capsys, store.folder, "audit", "history", str(store.tree_a))
    assert code == 0
    events = data["events"]
    stored = list(store.app.events.get(store.tree_a))
    assert [e["version"] for e in events] == [e.originator_version for e in stored]
    assert [e["event"] for e in events] == [type(e).__name__ for e in stored]
    positions = [e["position"] for e in events]
    assert positions == sorted(set(positions))
    assert positions == [store.row_of(store.tree_a, e["version"]) for e in events]
    first = events[0]
    assert first["user"] == "user0" and first["client"] == "web"
    assert first["time"] == stored[0].timestamp.isoformat()
    summaries = {e["event"]: e["summary"] for e in events}
    assert summaries["ReplyAdded"].startswith(
        f"reply {str(store.replies[1])[:8]} (assistant) to {str(store.tree_a)[:8]}: 'The moon pulls"
    )
    assert "spam=0, lang_mismatch=0 (task)" in summaries["LabelsSubmitted"]
    moves = [e["summary"] for e in events if e["event"] == "StateChanged"]
    assert any(m.startswith("state growing -> ranking (") for m in moves)
    decided = [e for e in events if e["event"] == "ReviewDecided"]
    assert decided and all(e["user_id"] is None for e in decided)  # follow-ups: the system
    code, out, _ = cli(capsys, store.folder, "audit", "history", str(store.tree_a))
    assert code == 0 and len(out.strip().splitlines()) == len(events) + 1
    assert "user0 via web" in out and "system" in out


def test_every_tree_event_has_a_summary() -> None:
    assert set(event_classes(ConversationTree)) <= set(SUMMARIES)
    parent, child = uuid4(), uuid4()
    imported = ConversationTree.RanksImported(
        originator_id=parent,
        originator_version=2,
        timestamp=datetime.now(UTC),
        user_id=None,
        client_id=None,
        ranks={str(parent): [child]},
    )
    assert summarize(imported) == f"ranks imported: {str(parent)[:8]}: {str(child)[:8]}"


def test_history_reads_events_under_their_current_topic(store: Store) -> None:
    """A log holding a tree's events under the classes' current module path reads the same."""
    before = history(open_log(store.db), store.app.mapper, store.tree_a)
    changed = store.change(
        "UPDATE stored_events SET topic = replace(topic, 'domain.tree:', 'domain.model.tree:')"
        " WHERE originator_id = ?",
        (store.tree_a.hex,),
    )
    assert changed == len(before)
    after = history(open_log(store.db), store.app.mapper, store.tree_a)
    assert [(e["event"], e["summary"]) for e in after] == [
        (e["event"], e["summary"]) for e in before
    ]


def test_bad_input_is_refused_without_traceback(store: Store, capsys, monkeypatch) -> None:
    unknown = "12345678-1234-5678-1234-567812345678"
    for argv in (
        ["audit", "history", unknown],
        ["audit", "history", "not-a-uuid"],
        ["audit", "history", str(store.users[0].user_id)],  # a user, not a tree
        ["audit", "show", unknown, "--as-of", "1"],
        ["audit", "show", str(store.tree_a), "--as-of", "yesterday"],
        ["audit", "show", str(store.tree_a), "--as-of", "999"],
        ["audit", "show", str(store.tree_a), "--as-of", "2001-01-01T00:00:00"],
        ["audit", "verify", "--digest", "abc", "--position", "3"],
        ["audit", "verify", "--digest", "00" * 32],
    ):  # nothing recorded yet (a plain `audit verify` records first: tests/test_audit_live.py)
        code, _, err = cli(capsys, store.folder, *argv)
        assert code == 2, argv
        assert err.startswith("error: "), argv
    if empty := logs.empty_store_url():  # on PostgreSQL the folder's log is the store's schema
        monkeypatch.setenv("DATAENGINE_STORE", empty)
    code, _, err = cli(capsys, store.folder / "nowhere", "audit", "digest")
    assert code == 2 and "no event store" in err


def test_an_unreachable_store_is_reported_without_traceback(tmp_path: Path, capsys, monkeypatch):
    pytest.importorskip("psycopg")
    from tests.pg_fixture import _free_port

    url = f"postgresql://postgres:secret@127.0.0.1:{_free_port()}/dataengine?schema=s"
    monkeypatch.setenv("DATAENGINE_STORE", url)  # nothing listens there
    for argv in (["digest"], ["verify"], ["history", str(uuid4())], ["show", str(uuid4())]):
        code, _, err = cli(capsys, tmp_path, "audit", *argv)
        assert code == 2 and err.startswith("error: cannot reach the store"), (argv, err)
        assert "secret" not in err


# ---------------------------------------------------------------------------- as of
def test_as_of_views_match_the_tree_at_that_version_and_moment(store: Store, capsys) -> None:
    assert len(store.snapshots) > 10
    views = []
    for snap in store.snapshots:
        code, by_version = cli_json(
            capsys, store.folder, "audit", "show", str(store.tree_a), "--as-of", str(snap.version)
        )
        assert code == 0
        code, by_time = cli_json(
            capsys,
            store.folder,
            "audit",
            "show",
            str(store.tree_a),
            "--as-of",
            snap.moment.isoformat(),
        )
        assert code == 0
        assert by_time == by_version
        assert by_version["version"] == snap.version
        assert by_version["state"] == snap.state
        assert len(by_version["messages"]) == snap.messages
        assert sum(len(m["reviews"]) for m in by_version["messages"]) == snap.reviews
        assert sum(len(m["rankings"]) for m in by_version["messages"]) == snap.rankings
        assert by_version["position"] == store.row_of(store.tree_a, snap.version)
        views.append(by_version)
    # Naive times are UTC.
    naive = store.snapshots[3].moment.replace(tzinfo=None).isoformat()
    code, view = cli_json(
        capsys, store.folder, "audit", "show", str(store.tree_a), "--as-of", naive
    )
    assert code == 0 and view["version"] == store.snapshots[3].version
    final = views[-1]
    assert final["state"] == "ready_for_export"
    root = next(m for m in final["messages"] if m["parent_id"] is None)
    assert [r["ranked"] for r in root["rankings"]] == [[str(i) for i in store.replies]] * 3
    assert {r["user_id"] for r in root["reviews"]} == {str(u.user_id) for u in store.users[1:4]}
    code, out, _ = cli(capsys, store.folder, "audit", "show", str(store.tree_a), "--as-of", "2")
    assert code == 0 and "version 2 of" in out and "review by" in out


# ---------------------------------------------------------------------------- digests
def test_digest_is_the_documented_chain_and_incremental(store: Store, capsys) -> None:
    code, data = cli_json(capsys, store.folder, "audit", "digest")
    assert code == 0
    head = store.sql("SELECT max(rowid) FROM stored_events")[0][0]
    assert (data["position"], data["digest"]) == spec_digest(store.db)
    assert data["position"] == head and data["new_events"] == head
    code, again = cli_json(capsys, store.folder, "audit", "digest")
    assert again["new_events"] == 0 and again["digest"] == data["digest"]
    store.more()
    code, later = cli_json(capsys, store.folder, "audit", "digest")
    assert later["new_events"] == later["position"] - head > 0
    assert (later["position"], later["digest"]) == spec_digest(store.db)
    # A digest at an earlier position (what a dataset manifest carries).
    code, earlier = cli_json(capsys, store.folder, "audit", "digest", "--position", "9")
    assert (earlier["position"], earlier["digest"]) == spec_digest(store.db, 9)
    # The same digest from scratch: the record changes nothing about the result.
    (store.folder / "audit.sqlite").unlink()
    code, scratch = cli_json(capsys, store.folder, "audit", "digest")
    assert scratch["digest"] == later["digest"]


def test_verify_intact_log(store: Store, capsys) -> None:
    cli(capsys, store.folder, "audit", "digest")
    store.more()
    code, out, _ = cli(capsys, store.folder, "audit", "verify")
    assert code == 0 and out.startswith("intact:")
    assert "events appended since the last recorded digest" in out


def test_flipped_byte_names_exactly_that_event(store: Store, capsys) -> None:
    cli(capsys, store.folder, "audit", "digest")
    store.more()  # unrecorded appends must not hide or confuse the damage
    version = 6
    position = store.row_of(store.tree_a, version)
    store.flip(position)
    code, out, _ = cli(capsys, store.folder, "audit", "verify")
    assert code == 1
    assert out.startswith(
        f"DAMAGED: first mismatch at position {position}: modified, "
        f"tree {store.tree_a} version {version} "
    )
    assert "state bytes changed" in out
    code, data = cli_json(capsys, store.folder, "audit", "verify")
    assert code == 1 and not data["intact"]
    assert data["damage"] == [data["first_damaged"]]  # exactly one event, nothing else
    assert (
        data["first_damaged"]["position"],
        data["first_damaged"]["tree_id"],
        data["first_damaged"]["version"],
    ) == (position, str(store.tree_a), version)
    store.flip(position)  # flipped back: intact again
    assert cli(capsys, store.folder, "audit", "verify")[0] == 0


def test_every_kind_of_damage_is_named(store: Store, capsys) -> None:
    cli(capsys, store.folder, "audit", "digest")
    head = store.sql("SELECT max(rowid) FROM stored_events")[0][0]
    last_id, last_version = store.sql(
        "SELECT originator_id, originator_version FROM stored_events WHERE rowid=?", (head,)
    )[0]
    b_pos = store.row_of(store.tree_b, 1)
    store.change(
        "UPDATE stored_events SET topic=? WHERE rowid=?",
        ("domain.tree:ConversationTree.ReplyAdded", b_pos),
    )
    store.change("DELETE FROM stored_events WHERE rowid=?", (head,))  # the newest event
    code, data = cli_json(capsys, store.folder, "audit", "verify")
    assert code == 1
    found = {(d["position"], d["kind"]) for d in data["damage"]}
    assert found == {(b_pos, "modified"), (head, "missing")}
    missing = next(d for d in data["damage"] if d["kind"] == "missing")
    assert (missing["tree_id"], missing["version"]) == (str(UUID(last_id)), last_version)
    modified = next(d for d in data["damage"] if d["kind"] == "modified")
    assert modified["tree_id"] == str(store.tree_b) and "topic" in modified["detail"]
    # Digest refuses to extend the record over a log whose recorded end has changed.
    code, _, err = cli(capsys, store.folder, "audit", "digest")
    assert code == 1 and "audit verify" in err


def test_deleted_event_is_detected(store: Store, capsys) -> None:
    cli(capsys, store.folder, "audit", "digest")
    version = 3
    position = store.row_of(store.tree_a, version)
    store.change("DELETE FROM stored_events WHERE rowid=?", (position,))
    code, out, _ = cli(capsys, store.folder, "audit", "verify")
    assert code == 1
    assert out.startswith(
        f"DAMAGED: first mismatch at position {position}: missing, "
        f"tree {store.tree_a} version {version} "
    )
    # Moving a row to another position is no better than deleting it.
    store.change("UPDATE stored_events SET rowid=? WHERE rowid=?", (position, position + 1))
    code, data = cli_json(capsys, store.folder, "audit", "verify")
    assert code == 1
    assert [(d["position"], d["kind"]) for d in data["damage"]] == [
        (position, "modified"),
        (position + 1, "missing"),
    ]


def test_unrecorded_hole_is_a_gap(store: Store, capsys) -> None:
    position = store.row_of(store.tree_c, 1) - 1
    store.change("DELETE FROM stored_events WHERE rowid=?", (position,))
    code, err_out, err = cli(capsys, store.folder, "audit", "digest")
    assert code == 1 and f"positions {position}..{position} are absent" in err
    code, data = cli_json(capsys, store.folder, "audit", "verify")
    assert code == 1 and data["first_damaged"]["kind"] == "gap"
    assert data["first_damaged"]["position"] == position


def test_old_digest_still_verifies_after_appends(store: Store, capsys) -> None:
    code, old = cli_json(capsys, store.folder, "audit", "digest")
    store.more()
    code, new = cli_json(capsys, store.folder, "audit", "digest")
    assert new["position"] > old["position"]
    code, out, _ = cli(
        capsys,
        store.folder,
        "audit",
        "verify",
        "--digest",
        old["digest"],
        "--position",
        str(old["position"]),
    )
    assert code == 0 and out.startswith("intact: the log up to position")
    # Damage after the old position does not concern the old digest; a full verify sees it.
    store.flip(new["position"])
    assert (
        cli(
            capsys,
            store.folder,
            "audit",
            "verify",
            "--digest",
            old["digest"],
            "--position",
            str(old["position"]),
        )[0]
        == 0
    )
    assert cli(capsys, store.folder, "audit", "verify")[0] == 1
    store.flip(new["position"])
    # Damage before it is named, even though the record was extended since.
    position = store.row_of(store.tree_a, 2)
    store.flip(position, offset=20)
    code, data = cli_json(
        capsys,
        store.folder,
        "audit",
        "verify",
        "--digest",
        old["digest"],
        "--position",
        str(old["position"]),
    )
    assert code == 1
    assert (
        data["first_damaged"]["position"],
        data["first_damaged"]["tree_id"],
        data["first_damaged"]["version"],
    ) == (position, str(store.tree_a), 2)
    # A digest that was never this log's is refused, if not explained.
    store.flip(position, offset=20)
    code, _, _ = cli(
        capsys,
        store.folder,
        "audit",
        "verify",
        "--digest",
        "ab" * 32,
        "--position",
        str(old["position"]),
    )
    assert code == 1
    code, _, _ = cli(
        capsys,
        store.folder,
        "audit",
        "verify",
        "--digest",
        old["digest"],
        "--position",
        str(new["position"] + 5),
    )
    assert code == 1


def test_record_and_verify_in_process(store: Store) -> None:
    log, audit = open_log(store.db), AuditStore(store.folder / "audit.sqlite")
    position, link, added, holes = record(log, audit)
    assert (position, link.hex()) == spec_digest(store.db) and not holes
    report = verify(log, audit)
    assert report.intact and report.events == added and report.digest == link
    checkpoints = [p for p, _ in audit.checkpoints()]
    assert checkpoints == sorted(set([p for p in range(4, position + 1, 4)] + [position]))


def test_parallel_blocks_find_what_one_pass_finds(store: Store, monkeypatch) -> None:
    import projections.audit.verify as verify_mod

    monkeypatch.setattr(verify_mod, "TASK_EVENTS", 8)  # several blocks on a small log
    log, audit = open_log(store.db), AuditStore(store.folder / "audit.sqlite")
    position, link, _, _ = record(log, audit)
    store.more()
    intact = verify(log, audit, workers=2)
    assert intact.intact and intact == verify(log, audit, workers=1)
    assert verify_mod.verify_digest(log, audit, link, position, workers=2).intact
    b_pos = store.row_of(store.tree_b, 1)
    store.flip(store.row_of(store.tree_a, 9))
    store.change("DELETE FROM stored_events WHERE rowid=?", (b_pos,))
    damaged = verify(log, audit, workers=2)
    assert damaged.damage == verify(log, audit, workers=1).damage
    assert [(d.position, d.kind) for d in damaged.damage] == [
        (store.row_of(store.tree_a, 9), "modified"),
        (b_pos, "missing"),
    ]
    assert not verify_mod.verify_digest(log, audit, link, position, workers=2).intact


@pytest.mark.sqlite_only(
    "a TEXT value that is not UTF-8 exists only in SQLite: PostgreSQL refuses it in a text column"
)
def test_text_that_is_not_utf8_is_hashed_not_fatal(store: Store, capsys) -> None:
    cli(capsys, store.folder, "audit", "digest")
    position = store.row_of(store.tree_a, 4)
    store.change("UPDATE stored_events SET topic=CAST(X'FF41' AS TEXT) WHERE rowid=?", (position,))
    code, data = cli_json(capsys, store.folder, "audit", "verify")
    assert code == 1 and [d["position"] for d in data["damage"]] == [position]
    assert "topic" in data["first_damaged"]["detail"]
    code, history = cli_json(capsys, store.folder, "audit", "history", str(store.tree_a))
    count = store.sql(
        "SELECT count(*) FROM stored_events WHERE originator_id=?", (store.tree_a.hex,)
    )[0][0]
    assert code == 0 and len(history["events"]) == count
    assert history["events"][3]["summary"].startswith("undecodable event")


# ---------------------------------------------------------------------------- HTTP
def test_http_digest(store: Store) -> None:
    # The handler on its own: the main app mounts it behind its API-key check.
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from api.http.audit import digest_endpoint

    app = Starlette(routes=[Route("/api/v1/audit/digest", digest_endpoint(store.folder))])
    with TestClient(app) as client:
        body = client.get("/api/v1/audit/digest").json()
        assert (body["position"], body["digest"]) == spec_digest(store.db)
        assert client.get("/api/v1/audit/digest?position=5").json() == {
            "position": 5,
            "digest": spec_digest(store.db, 5)[1],
        }
        assert client.get("/api/v1/audit/digest?position=x").status_code == 422
        assert client.get("/api/v1/audit/digest?position=999999").status_code == 422
        store.flip(body["position"])  # the head changed under the record: refused
        refused = client.get("/api/v1/audit/digest")
        assert refused.status_code == 409 and "audit verify" in refused.json()["message"]


# ---------------------------------------------------------------------------- replay
class TopicCounts:
    """A toy read model: events per topic, written to counts.json with its position."""

    name = "topic_counts"

    def position(self, folder: Path) -> int:
        path = folder / "counts.json"
        return json.loads(path.read_text())["position"] if path.exists() else 0

    def rebuild(self, data: Path, target: Path, upto: int) -> None:
        counts = dict(
            logs.read(
                data,
                "SELECT topic, count(*) FROM stored_events WHERE rowid <= ? GROUP BY topic",
                (upto,),
            )
        )
        (target / "counts.json").write_text(json.dumps({"position": upto, "counts": counts}))

    def rows(self, folder: Path) -> list[tuple]:
        return sorted(json.loads((folder / "counts.json").read_text())["counts"].items())


def test_replay_compares_rebuilt_and_live_read_models(store: Store, capsys) -> None:
    model = TopicCounts()
    model.rebuild(store.folder, store.folder, 20)
    [result] = replay(store.folder, [model])
    assert result.same and result.position == 20 and result.rows > 3
    live = json.loads((store.folder / "counts.json").read_text())
    live["counts"]["domain.tree:ConversationTree.TreeStarted"] += 1
    (store.folder / "counts.json").write_text(json.dumps(live))
    [result] = replay(store.folder, [model])
    assert not result.same and result.differences == 2
    assert (
        result.only_live[0][0]
        == result.only_rebuilt[0][0]
        == "domain.tree:ConversationTree.TreeStarted"
    )
    # The registered read model: built live by the projection runner, then audited.
    from projections.log import SQLiteLog
    from projections.runner import ProjectionRunner
    from projections.store import READMODEL_FILE

    log = SQLiteLog(store.db)
    ProjectionRunner(log, store.folder / READMODEL_FILE).run_once()
    log.close()
    code, out, _ = cli(capsys, store.folder, "audit", "replay")
    assert code == 0 and "same" in out
    conn = sqlite3.connect(store.folder / READMODEL_FILE)
    with conn:
        conn.execute("UPDATE messages SET text = 'tampered' WHERE rowid = 1")
    conn.close()
    code, out, _ = cli(capsys, store.folder, "audit", "replay")
    assert code == 1 and "1 rows differ" not in out and "rows differ" in out
