"""`dataengine images demo`: generated pictures with prompts about them, growing and ready
for pre-labelling; a second run adds nothing."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from api.bootstrap import caught_up_runner
from api.cli import main
from api.cli.images_demo import pictures
from api.storage.blobs import blob_store
from api.storage.image_codec import ImageLimits, sanitize


def test_demo_seeds_growing_image_prompts_once(tmp_path: Path, capsys) -> None:
    argv = ["images", "demo", "--data", str(tmp_path), "--count", "6", "--size", "48"]
    assert main(argv) == 0
    assert "6 image prompts added" in capsys.readouterr().err
    assert main(argv) == 0
    assert "0 image prompts added (6 already there)" in capsys.readouterr().err
    runner = caught_up_runner(str(tmp_path))
    try:
        states = runner.readmodel.reader().execute("SELECT state FROM trees").fetchall()
    finally:
        runner.close()
    assert [s for (s,) in states] == ["growing"] * 6
    assert main(["audit", "verify", "--blobs", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "blobs intact: 6 files behind 6 image references" in out, out
    # Read through the store (files, or rows of the PostgreSQL schema): the demo's six
    # pictures as the upload sanitised them.
    blobs = blob_store(tmp_path)
    digests = {sanitize(png, ImageLimits()).sha256 for _, _, png in pictures(6, 48)}
    sizes = {Image.open(io.BytesIO(blobs.read(d))).size for d in digests}
    assert len(digests) == 6 and sizes == {(48, 48)}
    assert main(["images", "demo", "--data", str(tmp_path), "--count", "0"]) == 2
