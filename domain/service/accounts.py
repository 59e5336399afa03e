"""Commands on web accounts (domain.model.account): sign-up, role and password changes.

Signing up creates the Account and its User in one unit of work, so a refused sign-up
(a taken name, a bad password) records nothing at all. The password arrives hashed:
the edge hashes (argon2) and verifies; here are the rules and the events.
"""

from __future__ import annotations

from uuid import UUID

from domain.model.account import (
    Account,
    AccountError,
    UsernameTakenError,
    account_id_for,
    check_username,
)
from domain.model.errors import UserDisabledError, UserNotFoundError
from domain.model.user import User, user_id_for
from domain.service.application import DataEngine, UnitOfWork

AUTH_METHOD = "local"  # OA's auth method for a front end's own accounts


def find_account(app: DataEngine, username: str) -> Account | None:
    """The account as cached, to read (never to change), or None. A sign-in decides access
    on it (password, role): a change made by another process is seen here within
    ``confirm_after`` seconds (ServiceBase.confirmed)."""
    return app.confirmed(Account, account_id_for(username))


def register_account(
    app: DataEngine,
    *,
    client_id: UUID,
    username: str,
    password_hash: str,
    role: str = "annotator",
    display_name: str | None = None,
) -> Account:
    check_username(username)
    account_id = account_id_for(username)
    user_id = user_id_for(client_id, AUTH_METHOD, username)

    def command(uow: UnitOfWork) -> Account:
        if account_id in app.repository:
            raise UsernameTakenError(f"the username {username!r} is taken")
        try:
            user = uow.get(User, user_id)
        except UserNotFoundError:  # a new person (the usual case)
            user = None
        if user is not None and user.deleted:
            raise UserDisabledError(f"user {username} was deleted")
        if user is None:
            uow.add(
                User.register(
                    client_id=client_id,
                    auth_method=AUTH_METHOD,
                    username=username,
                    display_name=display_name or username,
                )
            )
        account = Account.register(
            username=username, user_id=user_id, password_hash=password_hash, role=role
        )
        uow.add(account)
        return account

    return app.run((account_id, user_id), command)[0]


def _account_command(app: DataEngine, username: str, change: str, value: str) -> None:
    account_id = account_id_for(username)

    def command(uow: UnitOfWork) -> None:
        if find_account(app, username) is None:
            raise AccountError(f"no account {username!r}")
        getattr(uow.get(Account, account_id), change)(value)

    app.run((account_id,), command)


def change_role(app: DataEngine, *, username: str, role: str) -> None:
    _account_command(app, username, "change_role", role)


def change_password(app: DataEngine, *, username: str, password_hash: str) -> None:
    _account_command(app, username, "change_password", password_hash)
