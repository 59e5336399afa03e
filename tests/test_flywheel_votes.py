"""Done-when of issue 12: votes cast through OA's HTTP task protocol on model-written
candidates change the next flywheel turn's RM/DPO data and the model leaderboard."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from api.bootstrap import open_app  # noqa: E402
from api.flywheel import Flywheel, FlywheelPlan  # noqa: E402
from api.flywheel_table import table_rows  # noqa: E402
from api.http.app import create_app  # noqa: E402
from api.http.ratelimit import RateLimits  # noqa: E402
from domain.model.actor import Actor  # noqa: E402
from domain.model.config import TreeConfig  # noqa: E402
from domain.service.oa_import import import_trees  # noqa: E402
from tests.http_helpers import ROOT, Crowd, in_process, new_client_key  # noqa: E402
from training.prelabel import PrelabelOptions, Target  # noqa: E402
from training.prelabel_models import prelabel_models  # noqa: E402
from training.tiny import init_tiny  # noqa: E402

pytestmark = pytest.mark.anyio
CONFIG = TreeConfig(
    goal_tree_size=3,
    min_goal_tree_size=1,
    max_children_count=2,
    num_required_rankings=2,
    num_reviews_initial_prompt=2,
    num_reviews_reply=2,
)
OK = {"spam": 0.0, "lang_mismatch": 0.0}
PROMPTS = 4


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def human_tree(i: int) -> dict[str, Any]:
    """A ready tree people wrote and ranked: the data before any model was voted on."""
    root_id = str(uuid4())

    def reply(text: str, rank: int) -> dict[str, Any]:
        return {
            "message_id": str(uuid4()),
            "parent_id": root_id,
            "text": text,
            "role": "assistant",
            "lang": "en",
            "review_count": 2,
            "review_result": True,
            "rank": rank,
            "replies": [],
        }

    root = {
        "message_id": root_id,
        "text": f"human prompt {i}",
        "role": "prompter",
        "lang": "en",
        "review_count": 2,
        "review_result": True,
        "replies": [reply(f"good answer {i}", 0), reply(f"poor answer {i}", 1)],
    }
    return {"message_tree_id": root_id, "tree_state": "ready_for_export", "prompt": root}


def seeded_store(folder: Path, models: list[str]) -> dict[str, str]:
    """Two ready human trees, PROMPTS growing prompts each pre-labelled by both models;
    returns reply text -> model name."""
    folder.mkdir(parents=True)
    app = open_app(folder, CONFIG)
    try:
        assert import_trees(app, [human_tree(i) for i in range(2)]).imported == 2
        client, _ = app.register_client(name="seed")
        people = [
            Actor(app.ensure_user(client_id=client, auth_method="local", username=f"s{i}"), client)
            for i in range(3)
        ]
        targets = []
        for i in range(PROMPTS):
            tree = app.create_prompt(actor=people[0], text=f"question number {i}?").id
            for p in people[1:]:
                app.submit_labels(actor=p, tree_id=tree, message_id=tree, labels=OK)
            app.activate_tree(tree_id=tree)
            targets.append(Target(tree, tree))
        summaries = prelabel_models(
            app, targets, models, PrelabelOptions(n=1, max_new_tokens=8, seed=5)
        )
        assert [s.added for s in summaries] == [PROMPTS, PROMPTS]
        texts = {}
        for t in targets:
            for m in app.get_tree(t.tree_id).messages.values():
                if m.synthetic:
                    texts[m.text] = m.model_name
        return texts
    finally:
        app.close()


class PreferringCrowd(Crowd):
    """People who always rank the preferred model's reply first."""

    def __init__(self, *args: Any, texts: dict[str, str], preferred: str, **kw: Any):
        super().__init__(*args, **kw)
        self.texts, self.preferred = texts, preferred

    def answer(self, task: dict[str, Any], who: dict[str, str], frontend_id: str, n: int):
        body = super().answer(task, who, frontend_id, n)
        if task["type"].startswith("rank_"):
            replies = task["replies"]
            body["ranking"] = sorted(
                range(len(replies)), key=lambda i: self.texts.get(replies[i]) != self.preferred
            )
        return body


def dashboard(store: Path) -> str:
    """The web dashboard as a moderator sees it."""
    from starlette.testclient import TestClient

    from api.server import create_server
    from tests.test_web_app import _staff

    server = create_server(store, CONFIG, process_interval=0, rate_limits=RateLimits(False))
    with TestClient(server, follow_redirects=False) as web:
        _staff(web, "moira", "moderator")
        r = web.get("/dashboard")
        assert r.status_code == 200, r.text[:300]
        return r.text


def turn(store: Path, out: Path, previous: Path | None = None) -> dict[str, Any]:
    plan = FlywheelPlan(store=store, out=out, base_model="tiny", name=out.name, previous=previous)
    return Flywheel(plan, report=lambda _: None, progress=False).run(only=["datasets"])


def rm_pairs(out: Path) -> list[tuple[str, str]]:
    rows = []
    for split in ("train", "validation"):
        for line in (out / "datasets" / "rm" / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            rows.append((row["chosen"][0]["content"], row["rejected"][0]["content"]))
    return rows


async def test_http_votes_on_model_candidates_reach_the_next_turn(tmp_path) -> None:
    models = [str(init_tiny(tmp_path / name, seed=s)) for name, s in (("ma", 1), ("mb", 2))]
    store = tmp_path / "data"
    texts = seeded_store(store, models)
    preferred, other = models

    before = turn(store, tmp_path / "turn1")["steps"]["datasets"]
    assert before["from_votes"]["pairs"] == 0
    pairs_before = rm_pairs(tmp_path / "turn1")
    assert len(pairs_before) == 2  # one per human tree

    app = create_app(
        store, CONFIG, root_tokens=frozenset({ROOT}), seed=3, rate_limits=RateLimits(enabled=False)
    )
    async with in_process(app) as client:
        crowd = PreferringCrowd(
            client,
            await new_client_key(client),
            users=6,
            trees=2 + PROMPTS,
            seed=3,
            texts=texts,
            preferred=preferred,
        )
        assert await crowd.run(max_cycles=600) == 2 + PROMPTS, (crowd.types, crowd.errors[:3])
        assert crowd.types.get("rank_assistant_replies", 0) >= 2 * PROMPTS
        r = await client.get("/api/v1/models/leaderboard", headers=crowd.headers)
        assert r.status_code == 200, r.text
        board = {row["model_name"]: row for row in r.json()}
        r = await client.get("/api/v1/models/arena?rounds=100", headers=crowd.headers)
        assert r.status_code == 200, r.text
        arena = r.json()
        r = await client.get("/api/v1/models/arena?rounds=x", headers=crowd.headers)
        assert r.status_code == 422 and "rounds" in r.json()["message"], r.text

    # The leaderboard: the preferred model is stronger, with intervals, votes and voters.
    win, lose = board[preferred], board[other]
    assert win["strength"] > lose["strength"]
    assert win["strength_interval"][0] <= win["strength"] <= win["strength_interval"][1]
    assert win["votes"] == 2 * PROMPTS and win["voters"] >= 2
    assert win["win_rates"][other] == 1.0 and "replies" in win  # old fields kept
    assert [p["player"] for p in arena["players"]] == [preferred, other]
    assert arena["groups"] == PROMPTS and arena["matrix"][preferred][other] == 1.0

    # The dashboard's model leaderboard shows the same strengths with their intervals.
    page = dashboard(store)
    assert "strength [95%] (votes)" in page
    low, high = win["strength_interval"]
    assert f"{win['strength']:+.2f} [{low:+.2f}, {high:+.2f}] ({win['votes']})" in page

    # The next turn's data: the old rows plus a pair per voted prompt, from both models.
    after = turn(store, tmp_path / "turn2", tmp_path / "turn1")["steps"]["datasets"]
    pairs_after = rm_pairs(tmp_path / "turn2")
    assert set(pairs_before) <= set(pairs_after)
    new = [p for p in pairs_after if p not in pairs_before]
    assert len(new) == PROMPTS and after["new_rows"]["rm"] == after["new_rows"]["dpo"] == PROMPTS
    assert all(texts[chosen] == preferred and texts[rejected] == other for chosen, rejected in new)
    assert (tmp_path / "turn2" / "datasets" / "dpo" / "train.jsonl").read_text() == (
        tmp_path / "turn2" / "datasets" / "rm" / "train.jsonl"
    ).read_text()
    votes = after["from_votes"]
    assert votes["pairs"] == PROMPTS and votes["sft"] == PROMPTS  # sft takes the ranked best
    assert votes["models"][preferred] == {"pairs": PROMPTS, "kto": PROMPTS, "sft": PROMPTS}
    assert votes["models"][other] == {"pairs": PROMPTS, "kto": PROMPTS, "sft": 0}
    manifest = json.loads((tmp_path / "turn2" / "datasets" / "manifest.json").read_text())
    assert manifest["options"]["sft_model_replies"] is True
    report = dict(table_rows(turn(store, tmp_path / "turn2", tmp_path / "turn1")))
    assert report["new since turn1"].startswith("sft +")
    assert (
        report["rows from votes on candidates"]
        == f"pairs {PROMPTS}, kto {2 * PROMPTS}, sft {PROMPTS}"
    )
