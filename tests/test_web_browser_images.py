"""Issue 17's done-when in a real browser (headless Chromium through Playwright): a person
uploads an image with a prompt on the prompt page, another reviews it seeing the image, a
tiny vision-language model pre-labels it with two candidates, people review and rank them
on the pages, and the SFT and DPO datasets built afterwards train the tiny VLM two steps."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.test_web_browser import ARGS, CHROMIUM, _Server, kind, person, shot

os.environ.setdefault("HF_HUB_OFFLINE", "1")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium found (apt-get install chromium)"
)


def _config() -> Any:
    """Small trees: one review each, two replies, one ranking."""
    from domain.model.config import TreeConfig

    return TreeConfig(
        max_active_trees=3,
        goal_tree_size=3,
        min_goal_tree_size=3,
        max_tree_depth=1,
        max_children_count=2,
        num_reviews_initial_prompt=1,
        num_reviews_reply=1,
        num_required_rankings=1,
        p_full_labeling_review_prompt=0.0,
        p_full_labeling_review_reply_assistant=0.0,
    )


def _png() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (120, 90), (255, 255, 255))
    ImageDraw.Draw(image).rectangle((30, 20, 90, 70), fill=(200, 20, 20))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _loaded_images(page: Any) -> list[int]:
    """naturalWidth of every message image on the page (0: it did not load)."""
    page.wait_for_load_state("load")
    return page.eval_on_selector_all(".images img", "els => els.map(e => e.naturalWidth)")


def _label(page: Any, task_type: str, times: int = 1) -> None:
    """Ask for ``task_type`` on the home page and answer it (and the next ones handed out
    straight after), each time seeing the prompt's image."""
    page.click(f"button[name=type][value={task_type}]")
    for _ in range(times):
        assert kind(page) == f"task-{task_type}", page.inner_text("main")[:500]
        assert _loaded_images(page) == [120], page.content()[:2000]
        for box in page.query_selector_all(".label.yes_no"):
            box.query_selector("input[value='0']").check()
        page.click("form#answer button.primary")
        assert "Thanks, recorded." in page.content(), page.inner_text("main")[:500]


def test_image_prompt_to_trained_vlm_in_the_browser(tmp_path: Path) -> None:
    from api.cli import main
    from api.storage.blobs import blob_store
    from training.prelabel import PrelabelOptions, Target, prelabel
    from training.tiny_vlm import init_tiny_vlm

    vlm = init_tiny_vlm(tmp_path / "vlm")
    with _Server(tmp_path / "data", _config()) as server, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        author = person(browser, server, "author")
        author.click("button[name=type][value=initial_prompt]")
        assert kind(author) == "task-initial_prompt"
        author.fill("textarea[name=text]", "What shape is drawn in this picture?")
        author.set_input_files(
            "input[name=images]",
            files=[{"name": "s.png", "mimeType": "image/png", "buffer": _png()}],
        )
        author.click("form#answer button.primary")
        assert "Thanks, recorded." in author.content(), author.inner_text("main")[:500]
        shot(author, "image-prompt-done")

        reviewer = person(browser, server, "reviewer")
        _label(reviewer, "label_initial_prompt")
        app = server.service.app
        server.service.catch_up(server.service.head())
        (tree_id,) = [r[0] for r in server.service.reader().execute("SELECT tree_id FROM trees")]
        tree = app.get_tree(UUID(tree_id))
        if tree.state.value != "growing":
            app.activate_tree(tree_id=tree.id)

        summary = prelabel(
            app,
            [Target(tree.id, tree.id)],
            str(vlm),
            PrelabelOptions(n=2, max_new_tokens=8, seed=3),
            blobs=blob_store(server.folder),
        )
        assert summary.added == 2, summary.as_dict()
        server.service.catch_up(server.service.head())
        _label(person(browser, server, "checker"), "label_assistant_reply", times=2)

        ranker = person(browser, server, "ranker")
        ranker.click("button[name=type][value=rank_assistant_replies]")
        assert kind(ranker) == "task-rank_assistant_replies", ranker.inner_text("main")[:500]
        assert _loaded_images(ranker) == [120]
        shot(ranker, "image-ranking")
        ranker.keyboard.press("2")
        ranker.keyboard.press("1")
        with ranker.expect_navigation():
            ranker.keyboard.press("Enter")
        assert "Thanks, recorded." in ranker.content(), ranker.inner_text("main")
        assert app.get_tree(tree.id).state.value == "ready_for_export"
        browser.close()

    out = tmp_path / "build"
    argv = ["datasets", "build", "--images", "--data", str(tmp_path / "data"), "--out", str(out)]
    assert main([*argv, "--kinds", "sft,dpo", "--sft-model-replies", "--val-fraction", "0"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"]["dpo"]["train"] == 1 and len(manifest["images"]) == 1
    for kind_ in ("sft", "dpo"):
        run = ["train", kind_, "--data", str(out), "--model", str(vlm), "--out"]
        run += [str(tmp_path / kind_), "--max-steps", "2", "--quiet", "--set", "eval_strategy=no"]
        assert main([*run, "--set", "per_device_train_batch_size=1"]) == 0
        assert json.loads((tmp_path / kind_ / "metrics.json").read_text())["global_step"] == 2
