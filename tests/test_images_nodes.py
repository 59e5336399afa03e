"""Images across server nodes on one PostgreSQL store: blobs, upload tickets and the URL
key live in the log's schema (api.storage.pg_blobs), not under a node's data folder, so an
image uploaded through one node is named and read through another, and survives the loss
of the uploading node's disk; a damaged blob row is named as a damaged file is."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from api.http.app import create_app
from api.http.scaleout import SHARED_ENV
from api.storage.blobs import blob_store, sha256_hex
from api.storage.image_codec import sanitize
from api.storage.pg_blobs import PostgresBlobStore
from api.storage.uploads import ImageUploads
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, in_process, new_client_key, user
from tests.test_images import answer_prompt, damage, picture

U, REVIEWER = user(1), user(2)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def shared_store(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATAENGINE_STORE", pg_url)
    monkeypatch.setenv(SHARED_ENV, "1")
    # What a shared server sets in its process's environment (api.http.scaleout): set here
    # so the test gives it back, and later tests' applications do not inherit it.
    monkeypatch.setenv("AGGREGATE_CACHE_FASTFORWARD", "y")
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    return pg_url


@pytest.fixture
async def nodes(tmp_path: Path, shared_store: str) -> AsyncIterator[tuple[Env, Env]]:
    """Two servers, each with its own data folder, on one PostgreSQL schema."""

    def node(name: str, seed: int):
        return create_app(
            tmp_path / name, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=seed
        )

    async with in_process(node("a", 1)) as a, in_process(node("b", 2)) as b:
        key = await new_client_key(a)
        yield Env(a, key), Env(b, key)


@pytest.mark.anyio
async def test_upload_on_one_node_named_and_read_on_another(nodes, tmp_path: Path):
    a, b = nodes
    raw = picture("PNG", (40, 30))
    r = await a.client.post("/api/v1/images", content=raw, headers=a.h)
    assert r.status_code == 201, r.text
    uploaded = r.json()
    assert uploaded["sha256"] == sanitize(raw).sha256
    # Nothing of the upload is node-local: losing node A's disk loses nothing acknowledged.
    shutil.rmtree(tmp_path / "a" / "blobs", ignore_errors=True)

    # The prompt naming it goes to node B (the ticket is found there).
    await b.ack(await b.task(U, "initial_prompt"), "p1")
    r = await answer_prompt(b, [uploaded["image_id"]], "p1")
    assert r.status_code == 200, r.text

    # Another client's task, handed out by node B, carries a URL signed by node B: node A
    # honours it too (one URL key for the store), and a forged one on neither.
    reviewer = Env(b.client, await new_client_key(b.client))
    label = await reviewer.label_task(REVIEWER)
    (shown,) = label["conversation"]["messages"]
    (image,) = shown["images"]
    assert image["id"] == uploaded["image_id"] and image["sha256"] == uploaded["sha256"]
    forged = image["url"].replace("sig=", "sig=0")
    for node in (b, a):
        got = await node.client.get(image["url"], headers=reviewer.h)
        assert got.status_code == 200, got.text
        assert sha256_hex(got.content) == uploaded["sha256"]
        assert got.headers["content-type"] == "image/png"
        assert (await node.client.get(forged, headers=reviewer.h)).status_code == 404


@pytest.mark.anyio
async def test_another_clients_upload_stays_unnameable_on_other_nodes(nodes):
    a, b = nodes
    r = await a.client.post("/api/v1/images", content=picture("WEBP"), headers=a.h)
    assert r.status_code == 201, r.text
    other = Env(b.client, await new_client_key(b.client))
    await other.ack(await other.task(U, "initial_prompt"), "p2")
    r = await answer_prompt(other, [r.json()["image_id"]], "p2")
    assert r.status_code == 404, r.text


def test_tickets_and_url_key_are_shared_between_data_folders(tmp_path: Path, shared_store: str):
    first, second = ImageUploads(tmp_path / "a"), ImageUploads(tmp_path / "b")
    ticket = first.upload(picture("JPEG"), UUID(int=3))
    assert second.ticket(UUID(ticket.id)) == ticket
    assert second.ticket(UUID(int=4)) is None
    assert first.url_key() == second.url_key() == ImageUploads(tmp_path / "c").url_key()
    assert second.blobs.read(ticket.sha256) == first.blobs.read(ticket.sha256)
    assert not (tmp_path / "a" / "blobs").exists() and not (tmp_path / "b" / "blobs").exists()


def test_postgres_blobs_name_missing_and_altered(tmp_path: Path, shared_store: str):
    store = blob_store(tmp_path)
    assert isinstance(store, PostgresBlobStore)
    digest = store.put(b"abc")
    assert store.put(b"abc") == digest and store.read(digest) == b"abc"
    assert store.check(digest) == "ok"
    damage(store, digest, b"abd")
    assert store.check(digest) == "altered"
    assert store.put(b"abc") == digest and store.check(digest) == "ok"  # repaired
    damage(store, digest, None)
    assert store.check(digest) == "missing"
    with pytest.raises(FileNotFoundError):
        store.read(digest)
    with pytest.raises(ValueError):
        store.check("../etc/passwd")
    with psycopg.connect(store.tables.libpq) as conn:
        (count,) = conn.execute(f"SELECT count(*) FROM {store.tables.blobs}").fetchone()
    assert count == 0


def test_audit_blobs_from_another_node_names_damage(tmp_path: Path, shared_store: str, capsys):
    from api.bootstrap import open_app
    from api.cli import main
    from domain.model.actor import Actor

    uploads = ImageUploads(tmp_path / "a")
    (tmp_path / "b").mkdir()  # node B's data folder: nothing of the images is in it
    client = UUID(int=7)
    refs = [uploads.upload(picture("PNG", (10 + i, 10)), client).ref() for i in range(2)]
    app = open_app(tmp_path / "a", SMALL, synchronous="NORMAL")
    message = app.create_prompt(actor=Actor(None, client), text="Which?", images=refs).id
    app.close()

    def verify() -> tuple[int, str]:
        code = main(["audit", "verify", "--blobs", "--data", str(tmp_path / "b")])
        got = capsys.readouterr()
        return code, got.out + got.err

    code, out = verify()
    assert code == 0 and "blobs intact: 2 files behind 2 image references" in out, out
    damage(uploads.blobs, refs[1].sha256, b"not the image")
    code, out = verify()
    assert code == 1, out
    assert f"BLOB ALTERED: {refs[1].sha256} (image {refs[1].id} of message {message}" in out
    assert refs[0].sha256 not in out


def test_store_copy_moves_a_folders_images(tmp_path: Path, postgres, monkeypatch, capsys):
    from api.bootstrap import open_app
    from api.cli import main
    from domain.model.actor import Actor

    monkeypatch.delenv("DATAENGINE_STORE", raising=False)  # the source: SQLite and files
    old, url, client = tmp_path / "old", postgres.url(), UUID(int=5)
    uploads = ImageUploads(old)
    ticket = uploads.upload(picture("PNG"), client)
    key = uploads.url_key()
    app = open_app(old, SMALL, synchronous="NORMAL")
    app.create_prompt(actor=Actor(None, client), text="What?", images=[ticket.ref()])
    app.close()
    spoilt = uploads.upload(picture("WEBP"), client)
    damage(uploads.blobs, spoilt.sha256, b"not the image")
    argv = ["store", "copy", "--from", str(old), "--to", url]
    assert main(argv) == 1  # the log and the intact images moved; the altered one is named
    got = capsys.readouterr()
    assert "copied 1 image blobs and 2 upload tickets" in got.out
    assert f"altered image blobs, not copied: {spoilt.sha256}" in got.err

    monkeypatch.setenv("DATAENGINE_STORE", url)
    (tmp_path / "new").mkdir()
    moved = ImageUploads(tmp_path / "new")
    assert moved.ticket(UUID(ticket.id)) == ticket
    assert moved.url_key() == key  # URLs signed before the move stay valid
    assert moved.blobs.read(ticket.sha256) == uploads.blobs.read(ticket.sha256)
    assert main(["audit", "verify", "--blobs", "--data", str(tmp_path / "new")]) == 0
    assert "blobs intact: 1 files behind 1 image references" in capsys.readouterr().out
