"""The hand-out's claims across server processes (api.storage.claim_log).

The same rule as the in-process claims (domain.service.handout.Claims): a choice is made
from the pools less the targets handed out but not yet in the read model the pools were
read from; here those targets are every process's, read and claimed in one transaction
of the shared claim log, so two processes never both hand out the last slot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from api.storage.claim_log import PostgresClaimLog, Row, SQLiteClaimLog
from domain.service.handout import _KIND, Choice, Claims, _Claim, _without


class SharedClaims(Claims):
    def __init__(self, position: Callable[[], int], log: SQLiteClaimLog | PostgresClaimLog):
        super().__init__(position)
        self.log = log

    def decide(
        self,
        token: int,
        seen: int,
        pools: Any,
        user_id: UUID,
        pick: Callable[[Any], Choice],
    ) -> tuple[Choice, Any]:
        with self.lock:
            self._reading.pop(token, None)
        who = str(user_id)

        def choose(unseen: list[Row]) -> tuple[Choice, Row | None]:
            claims = [_Claim(m, u, k) for m, u, k in unseen]
            choice = pick(_without(pools, claims, who) if claims else pools)
            kind = _KIND.get(choice.task_type)
            if kind is None or choice.message_id is None:
                return choice, None
            return choice, (choice.message_id, who, kind)

        return self.log.decide(seen, choose)

    def settle(self, claim: Any, bound: int | None) -> None:
        if claim is not None:
            self.log.settle(claim, bound)
