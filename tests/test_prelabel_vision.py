"""Pre-labelling prompts with images: a tiny vision-language model (built offline) writes
candidates that saw the pictures; a text-only model skips image prompts and says how many."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import io
from pathlib import Path
from uuid import UUID

import pytest
from PIL import Image

from api.storage.uploads import ImageUploads
from domain.model.states import TreeState
from tests.test_prelabel import Store, cli_prelabel
from training.prelabel_vision import chat_images, job_chat
from training.tiny import init_tiny
from training.tiny_vlm import init_tiny_vlm, is_vision_model


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    return init_tiny_vlm(tmp_path_factory.mktemp("vlm") / "model")


def picture(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 40), colour).save(out, "PNG")
    return out.getvalue()


def image_tree(store: Store, text: str, colours: list[tuple[int, int, int]]) -> UUID:
    uploads = ImageUploads(store.folder)
    refs = [uploads.upload(picture(c), store.client).ref() for c in colours]
    tree_id = store.app.create_prompt(actor=store.person(), text=text, images=refs).id
    store.review(tree_id, tree_id)
    store.app.activate_tree(tree_id=tree_id)
    assert store.app.get_tree(tree_id).state is TreeState.GROWING
    return tree_id


def test_tiny_vlm_is_an_image_text_to_text_model(tiny_vlm: Path, tmp_path: Path):
    assert is_vision_model(tiny_vlm)
    assert not is_vision_model(init_tiny(tmp_path / "text"))
    assert not is_vision_model(tmp_path / "nothing here")


def test_vision_chat_places_images_before_their_text(tmp_path: Path):
    store = Store(tmp_path / "store")
    tree_id = image_tree(store, "Which colours?", [(255, 0, 0), (0, 0, 255)])
    tree = store.app.get_tree(tree_id)
    chat = job_chat(tree, tree_id, vision=True)
    assert chat is not None and [p["type"] for p in chat[0]["content"]] == [
        "image",
        "image",
        "text",
    ]
    assert chat_images(chat) == [i.sha256 for i in tree.root.images]
    assert job_chat(tree, tree_id, vision=False) is None


def test_prelabel_with_a_vlm_and_a_text_model(tmp_path: Path, tiny_vlm: Path, capsys):
    store = Store(tmp_path / "store")
    with_images = image_tree(store, "What shape is this?", [(200, 40, 40)])
    text_only = store.growing_tree("Name a prime number.")
    store.app.close()

    text_model = init_tiny(tmp_path / "text")
    summary = cli_prelabel(store, str(text_model), capsys)
    assert summary["skipped"] == {"image_prompt_text_model": 2}, summary
    assert summary["added"] == 2

    summary = cli_prelabel(store, str(tiny_vlm), capsys)
    store.reopen()
    assert summary["added"] == 2 and summary["skipped"] == {}, summary
    replies = store.model_replies(with_images)
    assert len(replies) == 2 and {m.model_name for m in replies} == {summary["model_name"]}
    assert len(store.model_replies(text_only)) == 2  # full: the text model's replies stay
