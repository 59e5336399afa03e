"""OA import: the fixture round-trips through the log; re-imports add nothing; bad input is refused."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from uuid import UUID

import pytest

from api.bootstrap import open_app
from api.cli import main
from domain.model.errors import DomainError, ErrorCode
from domain.model.states import TreeState
from domain.model.tree import ConversationTree
from domain.service.oa_import import import_trees, read_export_file
from projections import log_reader
from projections.oa_export import ExportOptions, TreeExporter

# Real OA export data, read from the shared folder beside the checkout (never copied here).
FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "oa" / "en_10_trees.jsonl"
needs_fixture = pytest.mark.skipif(not FIXTURE.exists(), reason="OA fixture not available")


def _synthetic_fixture_tree() -> UUID:
    """The first fixture tree whose prompt a model wrote (it has ranked replies)."""
    with FIXTURE.open() as lines:
        for line in lines:
            tree = json.loads(line)
            if tree["prompt"].get("synthetic"):
                return UUID(tree["message_tree_id"])
    raise AssertionError("the fixture has no synthetic tree")


def fixture_trees() -> dict[str, dict]:
    return {
        t["message_tree_id"]: {**t, "prompt": without_empty_emojis(t["prompt"])}
        for t in map(json.loads, FIXTURE.read_text().splitlines())
    }


def without_empty_emojis(node: dict) -> dict:
    """OA writes `"emojis": {}` for some messages and leaves it out for others (a NULL
    column); we cannot tell the two apart, and always leave an empty one out."""
    node = {k: v for k, v in node.items() if not (k == "emojis" and v == {})}
    node["replies"] = [without_empty_emojis(r) for r in node["replies"]]
    return node


def without_dates(node: dict) -> dict:
    """The fixture has no dates; ours carry the import time, which cannot round-trip."""
    node = {k: v for k, v in node.items() if k != "created_date"}
    if "replies" in node:
        node["replies"] = [without_dates(r) for r in node["replies"]]
    return node


def export_all(folder: Path, **options) -> list[dict]:
    db = log_reader.events_db(folder)
    exporter = TreeExporter(ExportOptions(**options))
    position = log_reader.resolve_position(db, None)
    return [json.loads(line) for line in exporter.lines(log_reader.iter_trees(db, position))]


@needs_fixture
def test_fixture_round_trips_through_import_and_export(tmp_path: Path) -> None:
    assert main(["import", "oa", str(FIXTURE), "--data", str(tmp_path)]) == 0
    out = tmp_path / "out.jsonl"
    assert (
        main(["export", "oa", "--data", str(tmp_path), "--out", str(out), "--include-synthetic"])
        == 0
    )
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    expected = fixture_trees()
    assert len(exported) == len(expected) == 10
    for tree in exported:
        tree["prompt"] = without_dates(tree["prompt"])
        assert tree == expected[tree["message_tree_id"]]


@needs_fixture
def test_default_export_drops_trees_holding_synthetic_messages(tmp_path: Path) -> None:
    app = open_app(tmp_path)
    import_trees(app, read_export_file(FIXTURE))
    synthetic = {i for i, t in fixture_trees().items() if t["prompt"]["synthetic"]}
    exported = {t["message_tree_id"] for t in export_all(tmp_path)}
    assert synthetic and not exported & synthetic
    assert len(exported) == 10 - len(synthetic)


@needs_fixture
def test_reimport_adds_nothing_and_gzipped_messages_files_import(tmp_path: Path) -> None:
    app = open_app(tmp_path / "a")
    first = import_trees(app, read_export_file(FIXTURE))
    assert (first.imported, first.skipped, first.failed) == (10, 0, [])
    end = log_reader.log_position(log_reader.events_db(tmp_path / "a"))
    again = import_trees(app, read_export_file(FIXTURE))
    assert (again.imported, again.skipped) == (0, 10)
    assert log_reader.log_position(log_reader.events_db(tmp_path / "a")) == end

    # The flat messages variant, gzipped, rebuilds the same trees in a second store.
    messages = tmp_path / "m.jsonl.gz"
    assert (
        main(
            [
                "export",
                "oa",
                "--data",
                str(tmp_path / "a"),
                "--out",
                str(messages),
                "--include-synthetic",
                "--messages",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in gzip.open(messages).read().splitlines()]
    assert len(rows) == 106 and all("replies" not in r and r["message_tree_id"] for r in rows)
    assert main(["import", "oa", str(messages), "--data", str(tmp_path / "b")]) == 0
    trees = export_all(tmp_path / "b", include_synthetic=True)
    expected = fixture_trees()
    assert {t["message_tree_id"] for t in trees} == set(expected)
    for tree in trees:
        assert without_dates(tree["prompt"]) == expected[tree["message_tree_id"]]["prompt"]


@needs_fixture
def test_import_keeps_ranks_origin_synthetic_and_model(tmp_path: Path) -> None:
    app = open_app(tmp_path)
    import_trees(app, read_export_file(FIXTURE), origin="oasst-fixture")
    tree = app.get_tree(_synthetic_fixture_tree())
    assert tree.state is TreeState.READY_FOR_EXPORT and tree.origin == "oasst-fixture"
    assert tree.root.synthetic and tree.root.model_name == "chip20b"
    replies = [tree.messages[c] for c in tree.root.children]
    assert [r.rank for r in replies] == [0, 1, 2]
    names = [type(e).__name__ for e in app.events.get(tree.id)]
    assert "RanksImported" in names and "StateChanged" not in names


@needs_fixture
def test_state_option_sends_trees_to_ranking_without_ranks(tmp_path: Path) -> None:
    app = open_app(tmp_path)
    report = import_trees(app, read_export_file(FIXTURE), state=TreeState.BACKLOG_RANKING)
    assert report.imported == 10
    tree = app.get_tree(_synthetic_fixture_tree())
    assert tree.state is TreeState.BACKLOG_RANKING
    assert all(m.rank is None for m in tree.messages.values())
    app.activate_tree(tree_id=tree.id)
    assert app.get_tree(tree.id).state is TreeState.RANKING


def small_tree(state: str = "ready_for_export", **root: object) -> dict:
    prompt = {
        "message_id": "00000000-0000-4000-8000-000000000001",
        "text": "hi",
        "role": "prompter",
        "lang": "en",
        "review_count": 3,
        "review_result": True,
        "deleted": False,
        "synthetic": False,
        "replies": [
            {
                "message_id": "00000000-0000-4000-8000-000000000002",
                "parent_id": "00000000-0000-4000-8000-000000000001",
                "text": "hello",
                "role": "assistant",
                "lang": "en",
                "review_count": 1,
                "review_result": False,
                "deleted": True,
                "synthetic": False,
                "replies": [],
            }
        ],
    }
    prompt.update(root)
    return {"message_tree_id": prompt["message_id"], "tree_state": state, "prompt": prompt}


@pytest.mark.parametrize(
    "state",
    [
        "aborted_low_grade",
        "halted_by_moderator",
        "scoring_failed",
        "prompt_lottery_waiting",
        "ready_for_export",
    ],
)
def test_every_state_is_reached_along_allowed_edges(state: str) -> None:
    from domain.model.config import TreeConfig

    tree = ConversationTree.import_tree(small_tree(state), config=TreeConfig())
    assert tree.state.value == state
    reply = tree.messages[UUID("00000000-0000-4000-8000-000000000002")]
    assert reply.deleted and reply.review_result is False and reply.review_count == 1


@pytest.mark.parametrize(
    "broken, code",
    [
        ({"role": "assistant"}, ErrorCode.INVALID_MESSAGE),
        ({"text": "   "}, ErrorCode.TASK_MESSAGE_TEXT_EMPTY),
        ({"message_id": "not-a-uuid"}, ErrorCode.INVALID_MESSAGE),
        (
            {
                "replies": [
                    {
                        "message_id": "00000000-0000-4000-8000-000000000003",
                        "text": "x",
                        "role": "prompter",
                    }
                ]
            },
            ErrorCode.INVALID_MESSAGE,
        ),
        ({"emojis": {"no_such_emoji": 1}}, ErrorCode.INVALID_MESSAGE),
    ],
)
def test_bad_trees_are_refused_with_a_typed_error(broken: dict, code: ErrorCode) -> None:
    from domain.model.config import TreeConfig

    with pytest.raises(DomainError) as info:
        ConversationTree.import_tree(small_tree(**broken), config=TreeConfig())
    assert info.value.error_code == code


def test_a_refused_tree_does_not_hold_back_its_batch(tmp_path: Path) -> None:
    app = open_app(tmp_path)
    bad = small_tree(role="assistant")
    good = small_tree()
    good["prompt"]["message_id"] = good["message_tree_id"] = "00000000-0000-4000-8000-0000000000aa"
    good["prompt"]["replies"][0]["parent_id"] = good["message_tree_id"]
    report = import_trees(app, [bad, good])
    assert report.imported == 1 and len(report.failed) == 1
    assert "error_code 2008" in report.failed[0][1]
