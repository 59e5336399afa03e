"""The ApiClient aggregate: a front end allowed to talk to us, identified by its key.

Only a hash of the key is stored. The aggregate id is derived from that hash, so
authenticating a request is one lookup by id, with no index to keep.
"""

from __future__ import annotations

import secrets
from dataclasses import field
from hashlib import sha256
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.model.topics import keep_stored_topics


def hash_key(api_key: str) -> str:
    # API keys are 256-bit random strings, so a fast hash is enough (no password stretching).
    return sha256(api_key.encode()).hexdigest()


def client_id_for_key(api_key: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/api-clients/{hash_key(api_key)}")


def new_api_key() -> str:
    return secrets.token_hex(32)


class ApiClient(Aggregate):
    # Set by the events' apply methods; init=False: eventsourcing builds it from Registered.
    name: str = field(init=False)
    key_hash: str = field(init=False)
    trusted: bool = field(init=False)
    enabled: bool = field(init=False)
    frontend_type: str | None = field(init=False)
    description: str | None = field(init=False)
    admin_email: str | None = field(init=False)

    class Registered(Aggregate.Created):
        name: str
        key_hash: str
        trusted: bool
        frontend_type: str | None
        description: str | None
        admin_email: str | None

        def apply(self, client: ApiClient) -> None:
            client.name = self.name
            client.key_hash = self.key_hash
            client.trusted = self.trusted
            client.frontend_type = self.frontend_type
            client.description = self.description
            client.admin_email = self.admin_email
            client.enabled = True

    class AccessChanged(Aggregate.Event):
        enabled: bool
        trusted: bool

        def apply(self, client: ApiClient) -> None:
            client.enabled = self.enabled
            client.trusted = self.trusted

    @classmethod
    def register(
        cls,
        *,
        name: str,
        api_key: str,
        trusted: bool = False,
        frontend_type: str | None = None,
        description: str | None = None,
        admin_email: str | None = None,
    ) -> ApiClient:
        return cls._create(
            cls.Registered,
            id=client_id_for_key(api_key),
            name=name,
            key_hash=hash_key(api_key),
            trusted=trusted,
            frontend_type=frontend_type,
            description=description,
            admin_email=admin_email,
        )

    def change_access(self, *, enabled: bool | None = None, trusted: bool | None = None) -> None:
        enabled = self.enabled if enabled is None else enabled
        trusted = self.trusted if trusted is None else trusted
        if (enabled, trusted) != (self.enabled, self.trusted):
            self.trigger_event(self.AccessChanged, enabled=enabled, trusted=trusted)

    def matches(self, api_key: str) -> bool:
        return secrets.compare_digest(self.key_hash, hash_key(api_key))


# Stored under its pre-move topics (domain.model.topics).
keep_stored_topics(ApiClient)
