"""Images on messages: the Pillow sanitiser, the blob store, upload and fetch over HTTP,
images in tasks (signed URLs), hiding on deletion, and bad uploads storing nothing."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest
from PIL import Image, PngImagePlugin

from api.http.app import create_app
from api.storage.blobs import FileBlobStore, sha256_hex
from api.storage.image_codec import ImageLimits, ImageRefused, sanitize
from domain.model.tree import ConversationTree
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, error, in_process, new_client_key, user

U, REVIEWER = user(1), user(2)


def picture(fmt: str = "PNG", size: tuple[int, int] = (32, 24), **save: object) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def with_metadata() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "secret name")
    return picture("PNG", pnginfo=info)


def bomb(side: int) -> bytes:
    """A tiny file declaring side x side pixels (one colour compresses to almost nothing)."""
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, "PNG", optimize=True)
    return out.getvalue()


# ---------------------------------------------------------------- sanitiser
@pytest.mark.parametrize(("fmt", "media"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")])
def test_sanitize_reencodes_each_format(fmt: str, media: str):
    clean = sanitize(picture(fmt))
    assert (clean.media_type, clean.width, clean.height) == (f"image/{media}", 32, 24)
    assert clean.sha256 == sha256_hex(clean.data)
    assert Image.open(io.BytesIO(clean.data)).format == fmt


def test_sanitize_strips_metadata_and_applies_orientation():
    clean = sanitize(with_metadata())
    assert b"secret name" not in clean.data
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    exif[0x010E] = "private description"
    rotated = picture("JPEG", (40, 10), exif=exif.tobytes())
    clean = sanitize(rotated)
    assert (clean.width, clean.height) == (10, 40)
    assert (
        b"private description" not in clean.data
        and not Image.open(io.BytesIO(clean.data)).getexif()
    )


@pytest.mark.parametrize(
    ("raw", "too_large", "unsupported"),
    [
        (b"", False, False),
        (b"GIF89a" + bytes(40), False, True),
        (b"just some text, not an image", False, True),
        (picture("GIF"), False, True),
        (picture("PNG")[:-30], False, False),  # truncated
        (picture("JPEG", (64, 64))[:200], False, False),  # truncated
        (bomb(6000), True, False),  # 36 MP > 25 MP, declared in a ~4 KB file
        (bomb(9000), True, False),  # a side over 8192
    ],
)
def test_sanitize_refuses(raw: bytes, too_large: bool, unsupported: bool):
    with pytest.raises(ImageRefused) as refused:
        sanitize(raw)
    assert (refused.value.too_large, refused.value.unsupported) == (too_large, unsupported)


def test_sanitize_refuses_by_bytes_before_decoding():
    with pytest.raises(ImageRefused, match="bytes") as refused:
        sanitize(picture("PNG", (64, 64)), ImageLimits(max_bytes=100))
    assert refused.value.too_large


def test_blob_store_names_missing_and_altered(tmp_path: Path):
    store = FileBlobStore(tmp_path)
    digest = store.put(b"abc")
    assert store.put(b"abc") == digest and store.read(digest) == b"abc"
    assert store.path(digest).relative_to(tmp_path).parts[:2] == ("sha256", digest[:2])
    assert store.check(digest) == "ok"
    store.path(digest).write_bytes(b"abd")
    assert store.check(digest) == "altered"
    store.path(digest).unlink()
    assert store.check(digest) == "missing"


def damage(blobs: object, sha256: str, data: bytes | None) -> None:
    """Alter (``data``) or remove (None) a stored blob behind the store's back, on files or
    on the PostgreSQL store's table."""
    if isinstance(blobs, FileBlobStore):
        if data is None:
            blobs.path(sha256).unlink()
        else:
            blobs.path(sha256).write_bytes(data)
        return
    import psycopg

    from api.storage.pg_blobs import PostgresBlobStore

    assert isinstance(blobs, PostgresBlobStore)
    tables = blobs.tables
    with psycopg.connect(tables.libpq, autocommit=True) as conn:
        if data is None:
            conn.execute(f"DELETE FROM {tables.blobs} WHERE sha256 = %s", (sha256,))
        else:
            conn.execute(f"UPDATE {tables.blobs} SET data = %s WHERE sha256 = %s", (data, sha256))


# ---------------------------------------------------------------- HTTP
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def env(tmp_path, monkeypatch) -> AsyncIterator[Env]:
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=1)
    async with in_process(app) as client:
        env = Env(client, await new_client_key(client))
        env.service = app.state.service  # type: ignore[attr-defined]
        env.folder = tmp_path  # type: ignore[attr-defined]
        yield env


async def upload(env: Env, raw: bytes, multipart: bool = False, headers: dict | None = None):
    h = headers or env.h
    if multipart:
        return await env.client.post("/api/v1/images", files={"file": ("x.png", raw)}, headers=h)
    return await env.client.post("/api/v1/images", content=raw, headers=h)


async def prompt_with_images(env: Env, image_ids: list[str], fid: str = "p1"):
    await env.ack(await env.task(U, "initial_prompt"), fid)
    return await answer_prompt(env, image_ids, fid)


async def answer_prompt(env: Env, image_ids: list[str], fid: str):
    body = {
        "type": "text_reply_to_message",
        "message_id": fid,
        "user_message_id": "m" + fid,
        "text": "What shape is in this picture?",
        "user": U,
        "image_ids": image_ids,
    }
    return await env.post("/api/v1/tasks/interaction", body)


def stored(env: Env) -> list[object]:
    """What uploads stored: files beside the log, or rows of the PostgreSQL store's tables."""
    from api.http import images

    blobs = images.uploads(env.service).blobs  # type: ignore[attr-defined]
    if isinstance(blobs, FileBlobStore):
        return [p for p in blobs.root.rglob("*") if p.is_file() and p.name != "url.key"]
    import psycopg

    tables = blobs.tables  # type: ignore[attr-defined]
    with psycopg.connect(tables.libpq, autocommit=True) as conn:
        return [
            *conn.execute(f"SELECT sha256 FROM {tables.blobs}").fetchall(),
            *conn.execute(f"SELECT id FROM {tables.uploads}").fetchall(),
        ]


def log_size(env: Env) -> int:
    return env.service.app.recorder.max_notification_id() or 0  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_upload_prompt_task_urls_and_deletion_hides(env: Env):
    r = await upload(env, picture("PNG"))
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["width"], first["height"], first["media_type"]) == (32, 24, "image/png")
    second = (await upload(env, picture("JPEG"), multipart=True)).json()
    assert second["media_type"] == "image/jpeg"
    assert (
        await prompt_with_images(env, [first["image_id"], second["image_id"]])
    ).status_code == 200

    # the log names the images by hash only
    app = env.service.app  # type: ignore[attr-defined]
    label = await env.label_task(REVIEWER)
    tree_id = label["message_id"]
    events = [
        e for e in app.events.get(UUID(tree_id)) if isinstance(e, ConversationTree.ImagesAttached)
    ]
    assert [i.sha256 for i in events[0].images] == [first["sha256"], second["sha256"]]

    # the task's conversation carries signed URLs for this client
    (shown,) = label["conversation"]["messages"]
    assert [i["id"] for i in shown["images"]] == [first["image_id"], second["image_id"]]
    url = shown["images"][0]["url"]
    got = await env.client.get(url, headers=env.h)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert sha256_hex(got.content) == first["sha256"]
    assert got.headers["x-content-type-options"] == "nosniff"

    # another client: not with this client's URL, not without a signature; a trusted one can
    other = {"X-API-Key": await new_client_key(env.client)}
    error(await env.client.get(url, headers=other), 404, 7102)
    bare = url.split("?")[0]
    error(await env.client.get(bare, headers=other), 404, 7102)
    assert (await env.client.get(bare, headers=env.trusted)).status_code == 200
    # a task handed to the other client's user carries URLs signed for that client
    r = await env.post("/api/v1/tasks/", {"type": "label_initial_prompt", "user": user(3)}, other)
    theirs = r.json()["conversation"]["messages"][0]["images"][1]["url"]
    assert (await env.client.get(theirs, headers=other)).status_code == 200
    error(await env.client.get(theirs.replace("sig=", "sig=0"), headers=other), 404, 7102)
    error(await env.client.get(theirs.replace("exp=", "exp=1"), headers=other), 404, 7102)

    # deleting the message hides its images from everyone
    r = await env.client.delete(f"/api/v1/messages/{tree_id}", headers=env.trusted)
    assert r.status_code in (200, 204), r.text
    for headers in (env.h, env.trusted):
        error(await env.client.get(url, headers=headers), 404, 7102)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (picture("PNG", (800, 800), compress_level=0), 413, 7101),  # 1.9 MB > the 1 MB limit
        (bomb(6000), 413, 7101),
        (b"%PDF-1.4 not an image", 415, 7103),
        (picture("PNG")[:-30], 422, 7100),
    ],
)
async def test_bad_uploads_store_nothing(env: Env, raw: bytes, status: int, code: int, monkeypatch):
    from api.http import images

    monkeypatch.setattr(images.uploads(env.service), "limits", ImageLimits(max_bytes=1_000_000))
    before = log_size(env)
    error(await upload(env, raw), status, code)
    error(await upload(env, raw, multipart=True), status, code)
    assert stored(env) == []
    assert log_size(env) == before


@pytest.mark.anyio
async def test_attach_refusals_record_nothing(env: Env):
    ids = [(await upload(env, picture("PNG", (8 + i, 8)))).json()["image_id"] for i in range(5)]
    other_key = await new_client_key(env.client)
    theirs = (await upload(env, picture("WEBP"), headers={"X-API-Key": other_key})).json()
    await env.ack(await env.task(U, "initial_prompt"), "p5")
    before = log_size(env)
    error(await answer_prompt(env, ids, "p5"), 400, 7100)  # more than 4
    error(await answer_prompt(env, [theirs["image_id"]], "p5"), 404, 7102)
    error(await answer_prompt(env, ["00000000-0000-0000-0000-000000000001"], "p5"), 404, 7102)
    assert log_size(env) == before
    assert (await answer_prompt(env, ids[:4], "p5")).status_code == 200
    # an assistant reply carries no images
    tree_id = await env.accept_prompt([user(2), user(3)])
    task = await env.task(user(4), "assistant_reply")
    assert task["type"] == "assistant_reply" and task["message_tree_id"] == tree_id
    await env.ack(task, "a1")
    extra = (await upload(env, picture("PNG"))).json()["image_id"]
    before = log_size(env)
    body = {
        "type": "text_reply_to_message",
        "message_id": "a1",
        "user_message_id": "ma1",
        "text": "A red rectangle.",
        "user": user(4),
        "image_ids": [extra],
    }
    error(await env.post("/api/v1/tasks/interaction", body), 400, 7100)
    assert log_size(env) == before


# ---------------------------------------------------------------- audit verify --blobs
def test_audit_verify_blobs_names_missing_and_altered(tmp_path: Path, capsys):
    from api.bootstrap import open_app
    from api.cli import main
    from api.storage.uploads import ImageUploads
    from domain.model.actor import Actor

    app = open_app(tmp_path, SMALL, synchronous="NORMAL")
    store = ImageUploads(tmp_path)
    client = UUID(int=7)
    refs = [store.upload(picture("PNG", (10 + i, 10)), client).ref() for i in range(3)]
    actor = Actor(None, client)
    first = app.create_prompt(actor=actor, text="Which is larger?", images=refs[:2]).id
    app.create_prompt(actor=actor, text="And this one?", images=refs[2:])
    app.close()

    def verify() -> tuple[int, str]:
        code = main(["audit", "verify", "--blobs", "--data", str(tmp_path)])
        return code, capsys.readouterr().out

    code, out = verify()
    assert code == 0 and "blobs intact: 3 files behind 3 image references" in out, out
    damage(store.blobs, refs[0].sha256, b"not the image")
    damage(store.blobs, refs[2].sha256, None)
    code, out = verify()
    assert code == 1, out
    assert f"BLOB ALTERED: {refs[0].sha256} (image {refs[0].id} of message {first}" in out
    assert f"BLOB MISSING: {refs[2].sha256}" in out
    assert refs[1].sha256 not in out


# ---------------------------------------------------------------- OA export and import
def test_oa_export_names_images_and_import_reads_them_back(
    tmp_path: Path, request: pytest.FixtureRequest
):
    import json

    from api.bootstrap import open_app
    from api.storage.uploads import ImageUploads
    from domain.model.actor import Actor
    from domain.service.oa_import import import_trees
    from projections.oa_export import ExportOptions, TreeExporter

    app = open_app(tmp_path / "a", SMALL, synchronous="NORMAL")
    client = UUID(int=9)
    refs = [ImageUploads(tmp_path / "a").upload(picture(f), client).ref() for f in ("PNG", "WEBP")]
    tree_id = app.create_prompt(actor=Actor(None, client), text="Which is which?", images=refs).id
    plain = app.create_prompt(actor=Actor(None, client), text="No pictures here.").id
    exporter = TreeExporter(ExportOptions(state=None, include_spam=True))
    lines = list(exporter.lines([app.get_tree(tree_id), app.get_tree(plain)]))
    app.close()
    exported = [json.loads(line) for line in lines]
    images = exported[0]["prompt"]["images"]
    assert [i["sha256"] for i in images] == [r.sha256 for r in refs]
    assert images[0]["path"] == f"blobs/sha256/{refs[0].sha256[:2]}/{refs[0].sha256}"
    assert "images" not in exported[1]["prompt"]  # unchanged for text-only messages

    # The import goes to another installation: a log of its own on either store (on the
    # exporter's own log the trees are already there, and an import skips them).
    elsewhere = None
    if request.config.getoption("--store") == "postgresql":
        elsewhere = request.getfixturevalue("postgres").url()
    other = open_app(tmp_path / "b", SMALL, synchronous="NORMAL", store=elsewhere)
    try:
        assert import_trees(other, exported).imported == 2
        assert other.get_tree(tree_id).root.images == refs
        bad = json.loads(lines[0])
        bad["message_tree_id"] = bad["prompt"]["message_id"] = str(UUID(int=5))
        bad["prompt"]["images"][0]["sha256"] = "../../etc/passwd"
        before = other.recorder.max_notification_id()
        report = import_trees(other, [bad])
        assert report.imported == 0 and report.failed
        assert other.recorder.max_notification_id() == before
    finally:
        other.close()
