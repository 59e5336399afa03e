"""Aggregate caches across processes: two DataEngine applications on one store (one SQLite
file; one PostgreSQL schema), as two server processes or nodes hold them.

Each process caches aggregates. What another process changes reaches this one's cache two
ways: the projection runner, following the log, evicts each cached aggregate whose logged
version moved past the cached one (DataEngine.forget_moved, before the batch is applied,
so a request waiting for a log position sees the aggregates reloaded); and reads that
decide access (an API client's key, a web account) confirm a cached copy against the
store once it is older than ``confirm_after`` seconds, so that bound holds even when the
runner lags or has stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.bootstrap import open_app
from api.storage.logdb import log_location
from domain.model.api_client import ApiClient
from domain.service import accounts
from domain.service.application import DataEngine
from projections.log import StoreLog
from projections.runner import ProjectionRunner

pytestmark = pytest.mark.usefixtures("each_store")

HOUR = 3600.0  # a confirm_after so long that only the log follower can refresh the cache


@pytest.fixture(params=["trust", "fastforward"])
def apps(
    request: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[DataEngine, ...]]:
    # "trust": a command trusts its cached copy (one process; the follower evicts what others
    # moved). "fastforward": loads read the newer events (a shared server's setting; the
    # follower only marks what others moved, and reads without I/O must not answer from it).
    if request.param == "fastforward":
        monkeypatch.setenv("AGGREGATE_CACHE_FASTFORWARD", "y")
    else:
        monkeypatch.delenv("AGGREGATE_CACHE_FASTFORWARD", raising=False)
    a, b = open_app(tmp_path), open_app(tmp_path)
    assert b.repository.fastforward is (request.param == "fastforward")
    try:
        yield a, b
    finally:
        b.close()
        a.close()


def follower(app: DataEngine, folder: Path, name: str = "b", **kw: Any) -> ProjectionRunner:
    """The runner a server process starts on its own read model, wired to its cache."""
    location = log_location(folder)
    return ProjectionRunner(
        StoreLog(location), folder / f"{name}-readmodel.sqlite", observe=app.forget_moved, **kw
    )


def answer(app: DataEngine, key: str) -> ApiClient | None:
    """What the HTTP layer decides for a request with this key (Service.authenticate_async):
    from the cache on the event loop, else from the store in the threadpool."""
    found = app.authenticate_cached(key)
    return app.authenticate(key) if found is False else found  # type: ignore[return-value]


def test_a_client_disabled_on_a_is_refused_by_b_once_bs_runner_follows(
    apps: tuple[DataEngine, DataEngine], tmp_path: Path
) -> None:
    a, b = apps
    b.confirm_after = HOUR
    client_id, key = a.register_client(name="front end")
    with follower(b, tmp_path) as runner:
        runner.run_once()
        assert answer(b, key) is not None and b.authenticate_cached(key) is not False  # cached
        a.change_client_access(client_id, enabled=False)
        runner.run_once()
        assert b.authenticate_cached(key) in (None, False)
        assert answer(b, key) is None
        a.change_client_access(client_id, enabled=True)  # and back: a disable is not final
        runner.run_once()
        assert answer(b, key) is not None


def test_a_client_disabled_on_a_is_refused_by_b_within_the_bound_without_a_runner(
    apps: tuple[DataEngine, DataEngine],
) -> None:
    a, b = apps
    b.confirm_after = 0.3
    client_id, key = a.register_client(name="front end")
    assert answer(b, key) is not None  # b caches the client (and confirms it now)
    a.change_client_access(client_id, enabled=False)
    disabled = time.monotonic()
    while answer(b, key) is not None:
        assert time.monotonic() - disabled < b.confirm_after + 0.5, "still served"
        time.sleep(0.01)
    # from then on every answer refuses, on the loop's path as on the threadpool's
    for _ in range(3):
        assert answer(b, key) is None and b.authenticate_cached(key) in (None, False)


def test_a_users_changes_on_a_are_seen_on_b(
    apps: tuple[DataEngine, DataEngine], tmp_path: Path
) -> None:
    a, b = apps
    b.confirm_after = HOUR
    client_id, _ = a.register_client(name="front end")
    user_id = a.ensure_user(
        client_id=client_id, auth_method="local", username="ann", display_name="Ann"
    )
    accounts.register_account(
        a, client_id=client_id, username="bob", password_hash="h1", role="annotator"
    )
    with follower(b, tmp_path) as runner:
        runner.run_once()
        assert b.user_of(user_id).display_name == "Ann"  # now cached on b
        assert b.find_user_cached(user_id) is not None
        assert accounts.find_account(b, "bob").role == "annotator"  # type: ignore[union-attr]
        a.ensure_user(
            client_id=client_id, auth_method="local", username="ann", display_name="Ann B."
        )
        a.update_user(user_id, enabled=False)
        accounts.change_role(a, username="bob", role="moderator")
        accounts.change_password(a, username="bob", password_hash="h2")
        runner.run_once()
        user = b.find_user_cached(user_id) or b.user_of(user_id)
        assert (user.display_name, user.enabled) == ("Ann B.", False)
        account = accounts.find_account(b, "bob")
        assert account is not None and (account.role, account.password_hash) == ("moderator", "h2")


def test_a_request_waiting_for_a_log_position_on_b_sees_the_change(
    apps: tuple[DataEngine, DataEngine], tmp_path: Path
) -> None:
    """Read-your-writes across nodes: once b's live runner reports a position caught up,
    the aggregates changed up to it are no longer the cached old copies."""
    a, b = apps
    b.confirm_after = HOUR
    client_id, key = a.register_client(name="front end")
    user_id = a.ensure_user(client_id=client_id, auth_method="local", username="ann")
    with follower(b, tmp_path, poll_interval=0.005) as runner:
        runner.run_once()
        assert b.user_of(user_id).display_name == "ann" and answer(b, key) is not None
        for n in range(5):
            position = a.update_user(user_id, display_name=f"Ann {n}")
            runner.start()
            assert runner.catch_up(position, timeout=10)
            assert b.user_of(user_id).display_name == f"Ann {n}"
            runner.stop()
        runner.start()
        a.change_client_access(client_id, enabled=False)
        assert runner.catch_up(runner.log.head(), timeout=10)
        assert b.authenticate_cached(key) in (None, False) and answer(b, key) is None


def test_own_writes_keep_their_cached_copies(
    apps: tuple[DataEngine, DataEngine], tmp_path: Path
) -> None:
    """Following the log evicts nothing this process wrote itself: the cache stays warm."""
    _, b = apps
    client_id, _ = b.register_client(name="front end")
    user_id = b.ensure_user(client_id=client_id, auth_method="local", username="ann")
    b.update_user(user_id, display_name="Ann")
    cached = b.find_user_cached(user_id)
    assert cached is not None
    with follower(b, tmp_path) as runner:
        assert runner.run_once() > 0
    assert b.find_user_cached(user_id) is cached


def test_rows_another_runner_applied_drop_the_cache(
    apps: tuple[DataEngine, DataEngine], tmp_path: Path
) -> None:
    """Two runners on one read model (a server's and a CLI command's): a batch the other
    one applied is never read by this one, so its cache cannot tell what moved and is
    dropped whole."""
    a, b = apps
    b.confirm_after = HOUR
    client_id, key = a.register_client(name="front end")
    with follower(b, tmp_path, batch_size=1) as runner:
        runner.run_once()
        assert answer(b, key) is not None
        # this runner reads the first (about someone else) and finds the rest applied
        a.ensure_user(client_id=client_id, auth_method="local", username="ann")
        a.change_client_access(client_id, enabled=False)
        with ProjectionRunner(
            StoreLog(log_location(tmp_path)), tmp_path / "b-readmodel.sqlite"
        ) as cli:
            cli.run_once()
        runner.run_once()
        assert runner.position == runner.log.head()
        assert b.authenticate_cached(key) in (None, False) and answer(b, key) is None


def test_two_server_nodes_see_each_others_user_changes(tmp_path: Path) -> None:
    """End to end, two ``serve --shared`` nodes: a user's profile changed through node A is
    what node B answers from its aggregate cache, at once for a request that carries A's
    log position, and within the runner's lag for one that does not."""
    from tests.test_scaleout import new_key, nodes, wait_for

    with nodes(tmp_path, 2, "--shared") as (a, b):
        headers = {"X-API-Key": new_key(a.url)}
        path = "/api/v1/frontend_users/"

        def change(**fields: Any) -> int:
            body = {"id": "ann", "auth_method": "local", **fields}
            r = httpx.post(a.url + path, json=body, headers=headers)
            assert r.status_code == 200, r.text
            return int(r.headers["x-log-position"])

        def on_b(position: int | None = None) -> dict[str, Any]:
            extra = {} if position is None else {"X-Log-Position": str(position)}
            r = httpx.get(b.url + path + "local/ann", headers={**headers, **extra})
            assert r.status_code == 200, r.text
            return dict(r.json())

        assert on_b(change(display_name="Ann"))["display_name"] == "Ann"  # cached on b
        assert on_b(change(display_name="Ann B."))["display_name"] == "Ann B."
        change(display_name="Ann C.", enabled=False)
        assert wait_for(lambda: on_b()["display_name"] == "Ann C.", 2.0)
        assert on_b()["enabled"] is False
