"""Which store a test's log is on, for tests that need more than the one log per test that
the PostgreSQL pass gives them (tests/conftest.py ``_store_for_each_test``).

A data folder's log is its events.sqlite, or under the PostgreSQL pass the schema named in
``DATAENGINE_STORE``. Tests that open two folders and expect two logs, share a store built
once per module, or copy a log to change the copy use these helpers; on the SQLite pass
they do what the folder alone already does (the folder's file is its log).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from api.storage.copy import copy_log
from api.storage.events import EVENTS_FILE
from api.storage.logdb import log_location


def on_postgres(request: pytest.FixtureRequest) -> bool:
    return request.config.getoption("--store") == "postgresql"


def new_store(request: pytest.FixtureRequest) -> str | None:
    """A fresh schema's URL under the PostgreSQL pass (None: the folder's SQLite file)."""
    if not on_postgres(request):
        return None
    return str(request.getfixturevalue("postgres").url())


def use_store(monkeypatch: pytest.MonkeyPatch, url: str | None) -> None:
    """Make ``url`` the log that the product opens from now on (None: leave it as it is)."""
    if url is not None:
        monkeypatch.setenv("DATAENGINE_STORE", url)


def fresh_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Switch to an empty log: for a test whose second folder must not see the first's log."""
    url = new_store(request)
    use_store(monkeypatch, url)
    return url


@contextmanager
def module_store(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """For a fixture wider than one test: its own store while it builds (the per-test
    store is not set yet); tests then ``use_store`` the URL it yields."""
    url = new_store(request)
    with pytest.MonkeyPatch.context() as patch:
        if url is None:
            patch.delenv("DATAENGINE_STORE", raising=False)
        else:
            patch.setenv("DATAENGINE_STORE", url)
        yield url


def copy_store(
    source: Path,
    folder: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Copy the log of data folder ``source`` (on the store in use) to a new log for
    ``folder`` and switch to it, so a test may change the copy: SQLite's VACUUM INTO, or
    the product's store copy into a fresh schema."""
    folder.mkdir(parents=True, exist_ok=True)
    from_location = log_location(source)
    url = new_store(request)
    if url is None:
        with closing(sqlite3.connect(from_location)) as conn:
            conn.execute("VACUUM INTO ?", (str(folder / EVENTS_FILE),))
        return
    copy_log(from_location, url)
    use_store(monkeypatch, url)
