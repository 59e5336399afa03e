"""`dataengine images demo`: a store seeded with generated pictures and prompts about them.

Shapes (circle, square, triangle) in colours drawn with Pillow on a plain background, each
uploaded as the API does (sanitised, content-addressed) and asked about in a prompt
("What shape is in this picture?", "What colour is the shape?", ...). The prompts are
reviewed by demo users and activated, so they are growing trees ready for
``dataengine prelabel --model <a vision-language model>``, then review and ranking in the
web app, ``datasets build --images`` and ``train sft|dpo``: the whole image path offline.
Idempotent per picture: running it again adds nothing (same frontend ids).
"""

from __future__ import annotations

import argparse
import io
import itertools
import sys
from typing import Any

from api.cli import add_data_option, fail

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (210, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 210),
    "yellow": (230, 200, 30),
    "purple": (140, 60, 170),
    "orange": (240, 140, 30),
    "black": (20, 20, 20),
    "pink": (240, 130, 180),
}
QUESTIONS = (
    "What shape is in this picture?",
    "What colour is the shape in this picture?",
    "Describe this picture in one sentence.",
)
REVIEW = {"spam": 0.0, "lang_mismatch": 0.0}
DEMO_KEY = "dataengine-internal-images-demo-client"


def register(sub: argparse._SubParsersAction) -> None:
    images = sub.add_parser("images", help="images on messages").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    demo = images.add_parser("demo", help="seed generated pictures and prompts about them")
    add_data_option(demo)
    demo.add_argument("--count", type=int, default=24, help="pictures (one prompt each)")
    demo.add_argument("--size", type=int, default=96, help="picture side in pixels")
    demo.set_defaults(handler=run_demo)


def picture(shape: str, colour: tuple[int, int, int], size: int) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    a, b = size // 5, size - size // 5
    if shape == "circle":
        draw.ellipse((a, a, b, b), fill=colour)
    elif shape == "square":
        draw.rectangle((a, a, b, b), fill=colour)
    else:
        draw.polygon([(size // 2, a), (b, b), (a, b)], fill=colour)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def pictures(count: int, size: int) -> list[tuple[str, str, bytes]]:
    """(shape, colour, PNG) for the first ``count`` shape/colour combinations, cycling."""
    combos = itertools.cycle(itertools.product(SHAPES, COLOURS))
    return [(s, c, picture(s, COLOURS[c], size)) for s, c in itertools.islice(combos, count)]


def seed(app: Any, folder: Any, count: int, size: int) -> tuple[int, int]:
    """Prompts added and already present."""
    from api.storage.uploads import ImageUploads
    from domain.model.actor import Actor
    from domain.model.api_client import client_id_for_key

    # A fixed key (public: it is in this file), so a second run names the same messages; the
    # client is disabled at once, so the key can never authenticate (as pre-labelling does).
    client = client_id_for_key(DEMO_KEY)
    app.register_client(name="images-demo", api_key=DEMO_KEY, description="images demo")
    app.change_client_access(client, enabled=False)
    users = [
        Actor(app.ensure_user(client_id=client, auth_method="local", username=f"demo{i}"), client)
        for i in range(4)
    ]
    uploads, added = ImageUploads(folder), 0
    for i, (shape, colour, png) in enumerate(pictures(count, size)):
        ref = uploads.upload(png, client).ref()
        outcome = app.create_prompt(
            actor=users[0],
            text=QUESTIONS[i % len(QUESTIONS)],
            frontend_message_id=f"images-demo:{i}:{shape}:{colour}",
            images=[ref],
        )
        if not outcome.recorded:
            continue
        added += 1
        for reviewer in users[1:]:
            tree = app.get_tree(outcome.id)
            if tree.root.review_result is not None:
                break
            app.submit_labels(
                actor=reviewer, tree_id=outcome.id, message_id=outcome.id, labels=REVIEW
            )
        if app.get_tree(outcome.id).state.value == "prompt_lottery_waiting":
            app.activate_tree(tree_id=outcome.id)
    return added, count - added


def run_demo(args: argparse.Namespace) -> int:
    from api.bootstrap import data_dir, load_config, open_app

    if not 1 <= args.count <= 1000 or not 16 <= args.size <= 1024:
        return fail("--count must be in 1..1000 and --size in 16..1024")
    folder = data_dir(args.data)
    app = open_app(folder, load_config(folder))
    try:
        added, present = seed(app, folder, args.count, args.size)
    finally:
        app.close()
    print(
        f"{added} image prompts added ({present} already there) in {folder}; next: "
        "dataengine prelabel --model <image-text-to-text model>",
        file=sys.stderr,
    )
    return 0
