"""Server processes starting at once on a fresh PostgreSQL schema each create the shared
tables (hand-out claims, rate log): PostgreSQL's CREATE ... IF NOT EXISTS is no guard
against a concurrent creator, so without api.storage.pg_url.create_tables's lock some of
them failed to start with a unique violation (seen in test_scaleout_pg_down)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from api.storage.claim_log import PostgresClaimLog
from api.storage.rate_log import PostgresRateLog


def _all_at_once(make: Callable[[], Any], n: int = 6) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run() -> None:
        start.wait()
        try:
            make()
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_shared_tables_created_by_many_processes_at_once(postgres: Any) -> None:
    for round_ in range(4):  # the race is a matter of timing: a few fresh schemas
        url = postgres.url(f"ddl_race_{round_}")
        assert _all_at_once(partial(PostgresClaimLog, url)) == []
        assert _all_at_once(partial(PostgresRateLog, url)) == []
        claims = PostgresClaimLog(url)  # and the table works
        decided, claim_id = claims.decide(0, lambda unseen: ("choice", ("m", "u", "k")))
        assert decided == "choice" and claim_id is not None
