"""What a name or a text may hold, whoever sends it (HTTP, web app, CLI, imports).

A user's id at its front end (``username``: OA's ``User.id``) and its display name are
shown to people and written into logs and exports, so they must be non-empty, short
(OA's columns: 128 and 256 characters) and free of control characters (a newline or an
escape sequence in a name forges log lines and terminal output). NUL is refused in every
text, message texts included: C strings, PostgreSQL text and many tools end a string
there, so what was stored and what is shown would differ.
"""

from __future__ import annotations

import unicodedata

from domain.model.errors import InvalidInputError

MAX_USERNAME_LENGTH = 128
MAX_DISPLAY_NAME_LENGTH = 256
# C0 and C1 controls, DEL, lone surrogates, and the line/paragraph separators
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def control_character(text: str) -> str | None:
    """The first control character in ``text`` (None when there is none)."""
    if text.isprintable():  # the common case, in C: no control, separator or surrogate
        return None
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return char
    return None


def check_name(value: object, what: str, limit: int) -> str:
    """A username or display name: a non-blank string of at most ``limit`` characters
    without control characters; returned unchanged."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{what} must not be empty")
    if len(value) > limit:
        raise InvalidInputError(f"{what} is {len(value)} characters long, the limit is {limit}")
    found = control_character(value)
    if found is not None:
        raise InvalidInputError(f"{what} contains the control character U+{ord(found):04X}")
    return value


def check_username(username: object) -> str:
    return check_name(username, "the user id", MAX_USERNAME_LENGTH)


def check_display_name(display_name: object) -> str:
    return check_name(display_name, "the display name", MAX_DISPLAY_NAME_LENGTH)


def check_no_nul(text: str, what: str = "the text") -> str:
    if "\x00" in text:
        raise InvalidInputError(f"{what} contains a NUL character")
    return text
