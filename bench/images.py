"""Benchmark: images on messages — upload latency, pre-labelling on CPU, dataset build.

    .venv/bin/python bench/images.py                      # 200 uploads, 40 prompts, 1,000 images
    .venv/bin/python bench/images.py --uploads 500 --prompts 100 --images 2000

Three figures, each in a fresh data folder:

1. Upload latency: ``POST /api/v1/images`` in process (httpx on the ASGI app, so no
   network), raw body and multipart, with distinct noisy PNG and JPEG pictures of
   ``--side`` pixels (noise compresses badly: the decode/re-encode does real work).
   p50/p99 per request, and the share of it spent in the Pillow sanitiser alone.
2. Pre-labelling on CPU: ``--prompts`` growing trees whose prompt carries one image,
   two candidates each from the tiny vision-language model (training.tiny_vlm,
   random weights, 16 new tokens): images/s and candidates/s, model load excluded.
3. Dataset build: ``--images`` images on ``--images / 4`` ready trees (four per prompt,
   two ranked replies each), then ``datasets build --images`` (sft and dpo, images
   embedded); seconds and images/s, and the text build of the same trees for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# bench/http.py would shadow the standard library's http package (httpx imports it)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from api.bootstrap import open_app  # noqa: E402
from api.storage.image_codec import sanitize  # noqa: E402
from api.storage.uploads import ImageUploads  # noqa: E402
from domain.model.actor import Actor  # noqa: E402
from domain.model.config import TreeConfig  # noqa: E402

CONFIG = TreeConfig(
    goal_tree_size=3,
    min_goal_tree_size=1,
    max_children_count=2,
    num_reviews_initial_prompt=1,
    num_reviews_reply=1,
    num_required_rankings=1,
)
OK = {"spam": 0.0, "lang_mismatch": 0.0}


def noisy(side: int, seed: int, fmt: str = "PNG") -> bytes:
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------- 1. uploads
async def _uploads(folder: Path, pictures: list[bytes], multipart: bool) -> list[float]:
    import httpx

    from api.http.app import create_app

    root = "bench-root"
    app = create_app(folder, CONFIG, root_tokens=frozenset({root}), seed=1)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
            r = await c.post(
                "/api/v1/admin/api_client",
                json={"description": "bench", "frontend_type": "bench"},
                headers={"Authorization": f"Bearer {root}"},
            )
            headers = {"X-API-Key": r.json()}
            times = []
            for raw in pictures:
                began = time.perf_counter()
                if multipart:
                    r = await c.post("/api/v1/images", files={"file": ("x", raw)}, headers=headers)
                else:
                    r = await c.post("/api/v1/images", content=raw, headers=headers)
                times.append(time.perf_counter() - began)
                assert r.status_code == 201, r.text
    return times


def bench_uploads(n: int, side: int) -> None:
    pictures = [noisy(side, i, "PNG" if i % 2 else "JPEG") for i in range(n)]
    began = time.perf_counter()
    for raw in pictures:
        sanitize(raw)
    sanitise_each = (time.perf_counter() - began) / n
    kb = statistics.mean(len(p) for p in pictures) / 1024
    print(f"1. upload latency: {n} distinct {side}x{side} PNG/JPEG pictures, mean {kb:.0f} KiB")
    for multipart in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            times = asyncio.run(_uploads(Path(tmp), pictures, multipart))
        p50, p99, mean = pct(times, 0.5), pct(times, 0.99), statistics.mean(times)
        print(
            f"   {'multipart' if multipart else 'raw body '}: p50 {p50 * 1e3:6.1f} ms, "
            f"p99 {p99 * 1e3:6.1f} ms, mean {mean * 1e3:6.1f} ms, {n / sum(times):4.0f} uploads/s;"
            f" the sanitiser alone {sanitise_each * 1e3:.1f} ms ({sanitise_each / mean:.0%} of "
            "the mean)"
        )


# ---------------------------------------------------------------- trees
class Trees:
    def __init__(self, folder: Path):
        self.folder = folder
        self.app = open_app(folder, CONFIG, synchronous="NORMAL")
        self.client, _ = self.app.register_client(name="bench")
        self.uploads = ImageUploads(folder)
        self.n = 0

    def person(self) -> Actor:
        self.n += 1
        return Actor(
            self.app.ensure_user(client_id=self.client, auth_method="local", username=f"p{self.n}"),
            self.client,
        )

    def prompt(self, pictures: list[bytes], text: str) -> Any:
        refs = [self.uploads.upload(p, self.client).ref() for p in pictures]
        tree_id = self.app.create_prompt(actor=self.person(), text=text, images=refs).id
        self.app.submit_labels(actor=self.person(), tree_id=tree_id, message_id=tree_id, labels=OK)
        self.app.activate_tree(tree_id=tree_id)
        return tree_id

    def ready(self, tree_id: Any, k: int) -> None:
        replies = []
        for j in range(2):
            r = self.app.add_reply(
                actor=self.person(), tree_id=tree_id, parent_id=tree_id, text=f"answer {k}.{j}"
            )
            self.app.submit_labels(actor=self.person(), tree_id=tree_id, message_id=r.id, labels=OK)
            replies.append(r.id)
        self.app.submit_ranking(
            actor=self.person(), tree_id=tree_id, parent_id=tree_id, ranked_message_ids=replies
        )


# ---------------------------------------------------------------- 2. pre-labelling
def bench_prelabel(prompts: int, side: int) -> None:
    from api.storage.blobs import blob_store
    from training.prelabel import PrelabelOptions, Target, prelabel
    from training.prelabel_vision import VisionGenerator
    from training.registry import ResolvedModel
    from training.tiny_vlm import init_tiny_vlm

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = init_tiny_vlm(folder / "vlm")
        trees = Trees(folder / "data")
        targets = [
            Target(t, t)
            for t in (
                trees.prompt([noisy(side, i)], f"What is in picture {i}?") for i in range(prompts)
            )
        ]
        generator = VisionGenerator(str(model), blob_store(folder / "data"), device="cpu")
        options = PrelabelOptions(n=2, max_new_tokens=16, batch_size=8, seed=0)
        resolved = ResolvedModel(model_name="tiny-vlm", path=str(model), registered=None)
        began = time.perf_counter()
        summary = prelabel(trees.app, targets, resolved, options, generator=generator)
        took = time.perf_counter() - began
        trees.app.close()
    print(
        f"2. pre-labelling on CPU (tiny VLM, n=2, 16 new tokens, batches of 8): {prompts} image "
        f"prompts in {took:.1f} s = {prompts / took:.1f} images/s, "
        f"{summary.added / took:.1f} candidates/s recorded ({summary.added} added; "
        f"generation {summary.generation_seconds / took:.0%} of the time)"
    )


# ---------------------------------------------------------------- 3. dataset build
def bench_build(images: int, side: int) -> None:
    from projections.datasets.build import build
    from projections.datasets.images import build_images
    from projections.datasets.rows import BuildOptions

    per_tree = 4
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        trees = Trees(folder / "data")
        began = time.perf_counter()
        for k in range(images // per_tree):
            pics = [noisy(side, k * per_tree + j) for j in range(per_tree)]
            trees.ready(trees.prompt(pics, f"Compare pictures of set {k}."), k)
        setup = time.perf_counter() - began
        trees.app.close()
        options = BuildOptions(kinds=("sft", "dpo"), sft_model_replies=True, val_fraction=0.05)
        began = time.perf_counter()
        manifest = build_images(folder / "data", folder / "vision", options)
        took = time.perf_counter() - began
        began = time.perf_counter()
        build(folder / "data", folder / "text", options, source="replay")
        text = time.perf_counter() - began
    print(
        f"3. dataset build: {len(manifest['images'])} images on {manifest['ready_trees']} ready "
        f"trees (made in {setup:.0f} s): build --images (sft+dpo, images embedded) {took:.1f} s "
        f"= {len(manifest['images']) / took:.0f} images/s; the text build of the same trees "
        f"{text:.1f} s ({took / text:.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--side", type=int, default=256, help="picture side in pixels")
    parser.add_argument("--only", choices=["uploads", "prelabel", "build"], default=None)
    args = parser.parse_args()
    if args.only in (None, "uploads"):
        bench_uploads(args.uploads, args.side)
    if args.only in (None, "prelabel"):
        bench_prelabel(args.prompts, args.side)
    if args.only in (None, "build"):
        bench_build(args.images, args.side)


if __name__ == "__main__":
    main()
