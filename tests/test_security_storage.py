"""A read-only or unwritable data folder stops start-up with a message naming the file and
the cause (instead of opening, serving reads, and failing at the first write).

Made unwritable the way the OS really refuses: as root (this machine's tests), permission
bits do not stop a write, so the file or folder is made immutable (``chattr +i``); as
another user, ``chmod`` is enough. Skipped where neither is possible."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from api.bootstrap import check_storage, open_app
from api.cli import main
from api.http.app import create_app
from domain.model.errors import ConfigError
from tests.http_helpers import SMALL, in_process


@contextmanager
def unwritable(path: Path) -> Iterator[None]:
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root without chattr: nothing here makes a path unwritable")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i refused here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    open_app(folder).close()  # events.sqlite exists
    return folder


def test_a_writable_folder_passes(store: Path) -> None:
    assert check_storage(store) == store
    assert not list(store.glob(".write-probe-*"))  # the probe is gone


def test_a_folder_that_takes_no_new_files_stops_start_up(store: Path) -> None:
    with unwritable(store), pytest.raises(ConfigError) as refused:
        check_storage(store)
    message = refused.value.message
    assert str(store) in message and "does not take new files" in message
    assert "Permission denied" in message or "Operation not permitted" in message


def test_an_unwritable_store_file_is_named(store: Path) -> None:
    events = store / "events.sqlite"
    with unwritable(events), pytest.raises(ConfigError) as refused:
        check_storage(store)
    message = refused.value.message
    assert f"{events} is not writable" in message
    assert "Permission denied" in message or "Operation not permitted" in message


def test_a_data_folder_that_cannot_be_created(tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir()
    with unwritable(parent), pytest.raises(ConfigError, match="cannot create the data folder"):
        check_storage(parent / "data")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_server_does_not_start_on_an_unwritable_read_model(
    store: Path, anyio_backend: str
) -> None:
    app = create_app(store, SMALL, root_tokens=frozenset({"r"}))
    async with in_process(app):
        pass  # a first start creates the read model
    readmodel = store / "readmodel.sqlite"
    app = create_app(store, SMALL, root_tokens=frozenset({"r"}))
    with unwritable(readmodel), pytest.raises(ConfigError, match="readmodel.sqlite is not"):
        async with in_process(app):
            pass


def test_dataengine_serve_says_why_and_exits_non_zero(store: Path, capsys) -> None:
    with unwritable(store):
        assert main(["serve", "--data", str(store)]) == 2
    err = capsys.readouterr().err
    assert f"the data folder {store} does not take new files" in err
