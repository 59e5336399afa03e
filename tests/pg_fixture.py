"""A real PostgreSQL for the tests: Debian's server binaries, started once per session.

``initdb`` + ``pg_ctl`` in a temporary folder owned by an unprivileged user (PostgreSQL
refuses to run as root), listening on a free TCP port of 127.0.0.1 and on a unix socket
in that folder; stopped, and the folder removed, when the session ends. Each test that
asks for a store gets its own schema, so tests never see each other's logs.

Fixtures: ``postgres`` (the server: ``.url(schema)``), ``pg_url`` (a fresh schema's URL),
``each_store`` (parametrizes a test over "sqlite" and "postgresql"; under the latter it
sets ``DATAENGINE_STORE``, which every part of the system reads to find the log).
Without the binaries the PostgreSQL cases are skipped with the reason.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_BIN = Path(os.environ.get("DATAENGINE_PG_BIN", "/usr/lib/postgresql/15/bin"))
DB = "dataengine"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One throw-away cluster; ``start`` and ``stop`` wrap initdb/pg_ctl."""

    def __init__(self, user: str = "postgres"):
        self.user = user
        self.folder = Path(tempfile.mkdtemp(prefix="dataengine-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self._schemas = itertools.count(1)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if os.geteuid() == 0:  # the server refuses root: run it as the unprivileged user
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(self.user)
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        )
        self._run(
            str(PG_BIN / "createdb"),
            "-h",
            str(self.folder),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            DB,
        )
        return self

    def stop(self) -> None:
        if self.data.exists():
            self._run(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "fast",
                "-w",
                "stop",
                check=False,
            )
        shutil.rmtree(self.folder, ignore_errors=True)

    def restart(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "restart")

    def url(self, schema: str | None = None) -> str:
        """A URL naming a fresh schema (created on first use by the store)."""
        schema = schema or f"t{os.getpid()}_{next(self._schemas)}"
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DB}?schema={schema}"


def available() -> str | None:
    """Why no PostgreSQL can be started here (None: it can)."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no unprivileged 'postgres' user to run the server"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    return None


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    reason = available()
    if reason:
        pytest.skip(reason)
    server = PostgresServer()
    try:
        server.start()
    except subprocess.CalledProcessError as e:
        server.stop()
        pytest.skip(f"PostgreSQL did not start: {e.stderr or e.stdout}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    return postgres.url()


@pytest.fixture(params=["sqlite", "postgresql"])
def each_store(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test runs once per store; under PostgreSQL the log is a fresh schema. The
    suite's PostgreSQL pass (--store postgresql) runs only the PostgreSQL case: the SQLite
    one ran in the SQLite pass."""
    if request.param == "sqlite" and request.config.getoption("--store") == "postgresql":
        pytest.skip("the SQLite case runs in the SQLite pass")
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        monkeypatch.setenv("DATAENGINE_STORE", url)
    else:
        monkeypatch.delenv("DATAENGINE_STORE", raising=False)
    return str(request.param)
