"""The Account aggregate: a web sign-in (username, password hash, role) for one user.

A person who signs up in the web app gets an account and an ordinary User of the
built-in web client; the account only says who may sign in as that user and with
which role. The password hash is an event field, so credentials live in the log like
everything else (never in a side table), and a refused sign-up records nothing.
Hashing itself happens at the edge (argon2 is CPU work, not a rule); the rules on
usernames, passwords and roles are here.
"""

from __future__ import annotations

import re
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.model.errors import DomainError, ErrorCode


class Role(StrEnum):
    ANNOTATOR = "annotator"
    MODERATOR = "moderator"
    ADMIN = "admin"


class AccountError(DomainError):
    error_code = ErrorCode.GENERIC_ERROR
    http_status = 400


class UsernameTakenError(AccountError):
    http_status = 409


_USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 256


def account_id_for(username: str) -> UUID:
    """Usernames are unique ignoring case: ``Ann`` and ``ann`` are one account."""
    return uuid5(NAMESPACE_URL, f"/accounts/{username.lower()}")


def check_username(username: str) -> str:
    if not _USERNAME.match(username):
        raise AccountError("a username has 3 to 32 letters, digits, '.', '_' or '-'")
    return username


def check_password(password: str, username: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise AccountError(f"a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if password.lower() == username.lower():
        raise AccountError("the password must differ from the username")


def check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise AccountError(f"role must be one of {', '.join(r.value for r in Role)}") from None


class Account(Aggregate):
    class Registered(Aggregate.Created):
        username: str
        user_id: UUID
        password_hash: str
        role: str

    class PasswordChanged(Aggregate.Event):
        password_hash: str

        def apply(self, account: Account) -> None:
            account.password_hash = self.password_hash

    class RoleChanged(Aggregate.Event):
        role: str

        def apply(self, account: Account) -> None:
            account.role = self.role

    @classmethod
    def register(cls, *, username: str, user_id: UUID, password_hash: str, role: str) -> Account:
        check_username(username)
        return cls._create(
            cls.Registered,
            id=account_id_for(username),
            username=username,
            user_id=user_id,
            password_hash=password_hash,
            role=check_role(role).value,
        )

    def __init__(self, *, username: str, user_id: UUID, password_hash: str, role: str) -> None:
        self.username = username
        self.user_id = user_id
        self.password_hash = password_hash
        self.role = role

    def change_password(self, password_hash: str) -> None:
        if password_hash != self.password_hash:
            self.trigger_event(self.PasswordChanged, password_hash=password_hash)

    def change_role(self, role: str) -> None:
        new = check_role(role).value
        if new != self.role:
            self.trigger_event(self.RoleChanged, role=new)

    @property
    def can_moderate(self) -> bool:
        return self.role in (Role.MODERATOR, Role.ADMIN)
