"""Commands on API clients and users, and the reads that answer who is asking."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.model.actor import Actor
from domain.model.api_client import ApiClient, client_id_for_key, new_api_key
from domain.model.errors import ApiClientNotFoundError, UserNotFoundError
from domain.model.user import User, user_id_for
from domain.service.base import FirstSight, ServiceBase
from domain.service.unit_of_work import Outcome, UnitOfWork

# What a deleted user shows as (OA's anonymisation): the id stays in the log.
DELETED_DISPLAY_NAME = "Deleted User"


class ClientCommands(ServiceBase):
    def register_client(
        self, *, name: str, api_key: str | None = None, trusted: bool = False, **details: Any
    ) -> tuple[UUID, str]:
        api_key = api_key or new_api_key()
        client_id = client_id_for_key(api_key)

        def command(uow: UnitOfWork) -> UUID:
            try:
                uow.get(ApiClient, client_id)
                return client_id
            except ApiClientNotFoundError:
                uow.add(ApiClient.register(name=name, api_key=api_key, trusted=trusted, **details))
                return client_id

        self.run((client_id,), command)
        return client_id, api_key

    def authenticate(self, api_key: str | None) -> ApiClient | None:
        """The enabled client this key belongs to, or None. A client disabled by another
        process is refused here within ``confirm_after`` seconds (ServiceBase.confirmed)."""
        if not api_key:
            return None
        return _usable(self.confirmed(ApiClient, client_id_for_key(api_key)), api_key)

    def authenticate_cached(self, api_key: str | None) -> ApiClient | None | bool:
        """``authenticate`` answered from the aggregate cache without I/O; False when the
        client is not cached or due to be confirmed against the store (the caller then
        calls ``authenticate`` off its event loop)."""
        if not api_key:
            return None
        client = self.confirmed_cached(ApiClient, client_id_for_key(api_key))
        return False if client is None else _usable(client, api_key)

    def find_client(self, client_id: UUID) -> ApiClient | None:
        """The client as cached, to read (never to change), or None."""
        return self._peek(ApiClient, client_id)

    def change_client_access(
        self, client_id: UUID, *, enabled: bool | None = None, trusted: bool | None = None
    ) -> None:
        self.run(
            (client_id,),
            lambda uow: uow.get(ApiClient, client_id).change_access(
                enabled=enabled, trusted=trusted
            ),
        )


def _usable(client: ApiClient | None, api_key: str) -> ApiClient | None:
    if client is None or not client.enabled or not client.matches(api_key):
        return None
    return client


class UserCommands(ServiceBase):
    def ensure_user(
        self,
        *,
        client_id: UUID,
        auth_method: str,
        username: str,
        display_name: str | None = None,
        **profile: Any,
    ) -> UUID:
        """Create the user on first sight; keep the display name (and profile) current."""
        return self.upsert_user(
            client_id=client_id,
            auth_method=auth_method,
            username=username,
            display_name=display_name,
            **profile,
        ).id

    def upsert_user(
        self,
        *,
        client_id: UUID,
        auth_method: str,
        username: str,
        display_name: str | None = None,
        tos_acceptance: bool = False,
        **profile: Any,
    ) -> Outcome:
        """``ensure_user`` that also reports the log position (OA's POST /frontend_users/).

        A deleted (anonymised) user stays deleted: its front end naming it again must not
        put its display name back. ``tos_acceptance`` records the first acceptance only."""
        user_id = user_id_for(client_id, auth_method, username)
        sight = FirstSight(
            user_id,
            client_id,
            auth_method,
            username,
            display_name,
            {**profile, "tos_acceptance": tos_acceptance},
        )

        def command(uow: UnitOfWork) -> UUID:
            sight.apply(uow, self.now())
            return user_id

        return Outcome.of(*self.run((user_id,), command))

    def update_user(self, user_id: UUID, **changes: Any) -> int | None:
        """Change a user's profile; the log position of the change (None: nothing changed)."""
        return self.run((user_id,), lambda uow: uow.get(User, user_id).update_profile(**changes))[1]

    def delete_user(self, user_id: UUID) -> int | None:
        """Anonymise a user (OA's DELETE /users/{id}): marked deleted, shown as "Deleted
        User", off the leaderboard. The original id stays in the log."""
        return self.update_user(
            user_id, deleted=True, display_name=DELETED_DISPLAY_NAME, show_on_leaderboard=False
        )

    def merge_users(
        self, *, destination_user_id: UUID, source_user_ids: list[UUID], actor: Actor
    ) -> int | None:
        """OA's /admin/merge_users, as events: the destination records UsersMerged, each
        source MergedInto (disabled, deleted); the read models attribute the sources'
        rows to the destination from there on. The log position of the merge."""
        ids = (destination_user_id, *source_user_ids)

        def command(uow: UnitOfWork) -> None:
            users = [uow.get(User, i) for i in dict.fromkeys(ids)]  # UserNotFoundError
            users[0].absorb([uow.get(User, i) for i in source_user_ids], actor)

        return self.run(ids, command)[1]

    def get_user(self, user_id: UUID) -> User:
        """A private copy of the user (UserNotFoundError when there is none)."""
        return self._read(User, user_id)

    def find_user(self, user_id: UUID) -> User | None:
        """The user as cached, to read (never to change), or None: no copy of its tasks."""
        return self._peek(User, user_id)

    def find_user_cached(self, user_id: UUID) -> User | None:
        """``find_user`` without I/O: None when the user is not in the cache."""
        return self._cached(User, user_id)

    def user_of(self, user_id: UUID) -> User:
        """``find_user`` that raises UserNotFoundError instead of answering None."""
        user = self.find_user(user_id)
        if user is None:
            raise UserNotFoundError(f"user {user_id} not found")
        return user
