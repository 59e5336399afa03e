"""The live audit chain: a running server extends audit.sqlite as events commit, so a row
changed before any digest, between two digests or after the last is named by `audit
verify` without anyone having taken a digest at the right time; signed checkpoints hold
the store to a published public key."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from api.cli import main
from api.http.app import create_app
from projections.audit.signing import PUBLIC_FILE, Signatures
from tests import log_helpers as logs
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, in_process, new_client_key

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def person(name: str) -> dict[str, str]:
    return {"id": name, "display_name": name, "auth_method": "local"}


def flip(folder: Path, position: int) -> None:
    """One bit of a stored event's state, on the folder's log (SQLite or PostgreSQL)."""
    logs.flip_byte(folder, position, len(logs.state_at(folder, position)) // 2)


def verify(folder: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["audit", "verify", "--data", str(folder), "--workers", "1", *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out + err


class Server:
    def __init__(self, app: Any, env: Env, folder: Path):
        self.app, self.env, self.folder = app, env, folder
        self.n = 0

    @property
    def follower(self) -> Any:
        return self.app.state.service.audit

    def head(self) -> int:
        return logs.head(self.folder)

    async def covered(self, within: float = 1.0) -> float:
        """Seconds until the follower has recorded the log's head (fails past ``within``)."""
        start, head = time.monotonic(), self.head()
        while self.follower.position < head:
            assert time.monotonic() - start < within, (self.follower.position, head)
            await asyncio.sleep(0.01)
        return time.monotonic() - start

    async def work(self, prompts: int = 2) -> None:
        for _ in range(prompts):
            self.n += 1
            await self.env.prompt(person(f"u{self.n}"), f"prompt number {self.n}", f"p{self.n}")

    async def digest(self) -> tuple[int, str]:
        r = await self.env.get("/api/v1/audit/digest")
        assert r.status_code == 200, r.text
        return r.json()["position"], r.json()["digest"]


@pytest.fixture
async def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Server]:
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    monkeypatch.setenv("DATAENGINE_RATE_LIMIT", "false")
    if "signed" in tmp_path.name:
        assert main(["audit", "keygen", "--data", str(tmp_path)]) == 0
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=9)
    async with in_process(app) as client:
        yield Server(app, Env(client, await new_client_key(client)), tmp_path)


async def test_events_are_covered_within_a_second(server: Server) -> None:
    for _ in range(3):
        await server.work(1)
        assert await server.covered(1.0) < 1.0
    assert server.follower.error is None


async def test_tamper_before_any_digest(server: Server, capsys) -> None:
    await server.work(3)
    await server.covered()
    target = server.head() - 4
    flip(server.folder, target)  # nobody ever took a digest
    code, out = verify(server.folder, capsys)
    assert code == 1 and f"position {target}" in out, out
    # and the next digest refuses to bless it
    r = await server.env.get("/api/v1/audit/digest", position=str(server.head()))
    assert r.status_code in (200, 409)
    flip(server.folder, target)
    assert verify(server.folder, capsys)[0] == 0


async def test_tamper_between_digests(server: Server, capsys) -> None:
    await server.work(2)
    first, _ = await server.digest()
    await server.work(2)
    second, _ = await server.digest()
    target = (first + second) // 2 + 1
    flip(server.folder, target)
    code, out = verify(server.folder, capsys)
    assert code == 1 and f"position {target}" in out, out


async def test_tamper_after_the_last_digest(server: Server, capsys) -> None:
    await server.work(1)
    last, _ = await server.digest()
    await server.work(2)
    await server.covered()
    target = server.head()
    assert target > last
    flip(server.folder, target)  # the newest event, after the last digest anyone took
    code, out = verify(server.folder, capsys)
    assert code == 1 and f"position {target}" in out, out


async def test_verify_records_a_log_no_server_followed(tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "simulate",
                "--trees",
                "1",
                "--users",
                "5",
                "--goal-tree-size",
                "2",
                "--seed",
                "1",
                "--data",
                str(tmp_path),
            ]
        )
        == 0
    )
    capsys.readouterr()
    code, out = verify(tmp_path, capsys)
    assert code == 0 and "recording the chain now" in out, out
    flip(tmp_path, 3)
    assert verify(tmp_path, capsys)[0] == 1


async def test_signed_checkpoints(server: Server, capsys, tmp_path: Path) -> None:
    public = (server.folder / PUBLIC_FILE).read_text().strip()
    await server.work(2)
    await server.covered()
    assert server.follower.signed >= 1
    code, out = verify(server.folder, capsys, "--public-key", public)
    assert code == 0 and "signed checkpoints hold" in out, out
    # another key: refused
    other = tmp_path / "elsewhere"
    assert main(["audit", "keygen", "--data", str(other)]) == 0
    wrong = (other / PUBLIC_FILE).read_text().strip()
    capsys.readouterr()
    code, out = verify(server.folder, capsys, "--public-key", wrong)
    assert code == 1 and "does not hold" in out
    # a forger rewrites a signed digest (as a rewrite of the log would need): refused
    with sqlite3.connect(server.folder / "audit.sqlite") as conn:
        position, digest, _ = Signatures(conn).rows()[-1]
        conn.execute("UPDATE signatures SET digest=? WHERE position=?", (bytes(32), position))
    code, out = verify(server.folder, capsys, "--public-key", public)
    assert code == 1 and "SIGNATURE" in out
    assert digest != bytes(32)
