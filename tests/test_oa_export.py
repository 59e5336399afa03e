"""OA export from the log: filters, ordering, labels, events, anonymising, --as-of."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from uuid import UUID

import pytest

from api.bootstrap import open_app
from api.cli import main
from domain.model.config import TreeConfig
from domain.model.states import TreeState
from domain.model.tree import ConversationTree
from projections.oa_export import ExportOptions, TreeExporter
from tests.conftest import Clock, Kit, small_config


class Scene:
    """A ready tree (root, r1 ranked below r2, an unreviewed late reply r3) and a growing one."""

    def __init__(self, folder: Path, store: str | None = None):
        self.folder = folder
        # The scene is shared by the module's tests, so it names its log itself (each
        # test's own DATAENGINE_STORE schema, in the PostgreSQL pass, is another log).
        self.store = ["--store", store] if store else []
        self.kit = kit = Kit(open_app(folder, small_config(), clock=Clock(), store=store), Clock())
        self.tree = kit.growing_tree()
        self.r1 = kit.accepted_reply(self.tree, self.tree)
        self.r2 = kit.accepted_reply(self.tree, self.tree)
        self.rankers = [kit.rank(self.tree, self.tree, [self.r2, self.r1]) for _ in range(2)]
        self.before_last_ranking = kit.app.recorder.max_notification_id()
        kit.rank(self.tree, self.tree, [self.r2, self.r1])
        assert kit.state(self.tree) is TreeState.READY_FOR_EXPORT
        self.r3 = kit.reply(self.tree, self.tree)  # stored, never reviewed
        self.fan = kit.user()
        kit.app.toggle_emoji(tree_id=self.tree, message_id=self.r1, emoji="+1", actor=self.fan)
        kit.app.submit_labels(
            actor=self.fan,
            tree_id=self.tree,
            message_id=self.r1,
            labels={"quality": 0.5, "spam": 1.0},
            kind="free",
        )
        self.growing = kit.growing_tree()

    def export(self, *args: str) -> list[dict]:
        out = self.folder / "out.jsonl"
        assert main(self.command("--out", str(out), *args)) == 0
        return [json.loads(line) for line in out.read_text().splitlines()]

    def command(self, *args: str) -> list[str]:
        return ["export", "oa", "--data", str(self.folder), *self.store, *args]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Scene:
    store = None
    if request.config.getoption("--store") == "postgresql":
        store = request.getfixturevalue("postgres").url()  # a schema of its own
    return Scene(tmp_path_factory.mktemp("scene"), store)


def test_default_export_is_ready_trees_with_accepted_replies_sorted_by_rank(scene: Scene) -> None:
    [tree] = scene.export()
    assert tree["message_tree_id"] == str(scene.tree) and tree["tree_state"] == "ready_for_export"
    root = tree["prompt"]
    assert "parent_id" not in root and "rank" not in root  # null fields are left out
    assert [r["message_id"] for r in root["replies"]] == [str(scene.r2), str(scene.r1)]
    assert [r["rank"] for r in root["replies"]] == [0, 1]
    r1 = root["replies"][1]
    assert r1["emojis"] == {"+1": 1} and r1["review_count"] == 3 and r1["review_result"] is True
    assert r1["parent_id"] == str(scene.tree) and r1["user_id"] and r1["created_date"]
    assert r1["replies"] == [] and "labels" not in r1 and "events" not in r1


def test_include_spam_adds_the_unreviewed_reply_last(scene: Scene) -> None:
    [tree] = scene.export("--include-spam")
    replies = tree["prompt"]["replies"]
    assert [r["message_id"] for r in replies] == [str(scene.r2), str(scene.r1), str(scene.r3)]
    assert "review_result" not in replies[2] and "rank" not in replies[2]


def test_labels_average_reviews_and_free_labels(scene: Scene) -> None:
    [tree] = scene.export("--labels")
    r1 = tree["prompt"]["replies"][1]
    # three task reviews said spam 0, the free label said 1 and quality 0.5
    assert r1["labels"] == {
        "spam": {"value": 0.25, "count": 4},
        "quality": {"value": 0.5, "count": 1},
    }


def test_events_carry_every_ranking_and_emoji(scene: Scene) -> None:
    [tree] = scene.export("--events")
    rankings = tree["prompt"]["events"]["ranking"]
    assert len(rankings) == 3
    assert all(r["ranked_message_ids"] == [str(scene.r2), str(scene.r1)] for r in rankings)
    assert all(
        r["ranking"] == [1, 0]
        and r["ranking_parent_id"] == str(scene.tree)
        and r["not_rankable"] is False
        for r in rankings
    )
    assert str(scene.rankers[0].user_id) in {r["user_id"] for r in rankings}
    r1 = tree["prompt"]["replies"][1]
    assert r1["events"]["emoji"] == [{"user_id": str(scene.fan.user_id), "emoji": "+1"}]


def test_anonymized_ids_are_seeded_consistent_and_hide_the_originals(scene: Scene) -> None:
    [a] = scene.export("--anonymize", "s1", "--events")
    [b] = scene.export("--anonymize", "s1", "--events")
    [c] = scene.export("--anonymize", "s2")
    assert a == b and a["message_tree_id"] != c["message_tree_id"]
    assert a["message_tree_id"] == a["prompt"]["message_id"] != str(scene.tree)
    assert all(r["parent_id"] == a["prompt"]["message_id"] for r in a["prompt"]["replies"])
    text = json.dumps(a)
    for real in (scene.tree, scene.r1, scene.r2, scene.fan.user_id, scene.rankers[0].user_id):
        assert str(real) not in text
    assert UUID(a["prompt"]["replies"][0]["user_id"])  # still UUID-shaped: re-importable


def test_state_filter_and_flat_messages(scene: Scene) -> None:
    trees = scene.export("--state", "all")
    assert {t["tree_state"] for t in trees} == {"ready_for_export", "growing"}
    [growing] = scene.export("--state", "growing")
    assert growing["message_tree_id"] == str(scene.growing)
    rows = scene.export("--messages")
    assert [r["message_id"] for r in rows] == [str(scene.tree), str(scene.r2), str(scene.r1)]
    assert all(r["message_tree_id"] == str(scene.tree) and "replies" not in r for r in rows)
    assert scene.export("--lang", "de") == []


def test_as_of_exports_the_tree_as_it_was(scene: Scene) -> None:
    position = str(scene.before_last_ranking)
    assert scene.export("--as-of", position) == []
    [tree] = scene.export("--as-of", position, "--state", "ranking")
    assert all("rank" not in r for r in tree["prompt"]["replies"])
    assert main(scene.command("--out", "-", "--as-of", "999999999")) == 2


def test_gzip_output_is_byte_stable(scene: Scene, tmp_path: Path) -> None:
    outs = []
    for name in ("a.jsonl.gz", "b.jsonl.gz"):
        assert main(scene.command("--out", str(tmp_path / name))) == 0
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    assert json.loads(gzip.decompress(outs[0]))["message_tree_id"] == str(scene.tree)


def test_deleted_messages_and_low_count_rejections() -> None:
    """OA's quirk: a rejection with at most two reviews is exported as null."""
    ids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 4)]
    reply = {"text": "r", "role": "assistant", "lang": "en", "synthetic": False, "replies": []}
    tree = ConversationTree.import_tree(
        {
            "message_tree_id": ids[0],
            "tree_state": "ready_for_export",
            "prompt": {
                "message_id": ids[0],
                "text": "p",
                "role": "prompter",
                "review_count": 3,
                "review_result": True,
                "deleted": False,
                "synthetic": False,
                "replies": [
                    {
                        **reply,
                        "message_id": ids[1],
                        "review_count": 2,
                        "review_result": False,
                        "deleted": False,
                    },
                    {
                        **reply,
                        "message_id": ids[2],
                        "review_count": 3,
                        "review_result": True,
                        "deleted": True,
                    },
                ],
            },
        },
        config=TreeConfig(),
    )
    default = TreeExporter(ExportOptions()).tree(tree).prompt.replies
    assert default == []
    everything = TreeExporter(ExportOptions(include_spam=True, include_deleted=True))
    low, deleted = everything.tree(tree).prompt.replies
    assert low.review_result is None and low.review_count == 2
    assert deleted.deleted is True and deleted.review_result is True
