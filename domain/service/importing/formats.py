"""The four open row formats, what marks each one, and a row of each read into one shape.

- prompts: a ``prompt`` (or ``instruction``, ``question``, ``text``) column;
- messages: TRL/OpenAI chat rows, ``messages: [{role, content}]``;
- pairs: ``prompt`` + ``chosen`` + ``rejected`` (TRL's explicit form), or ``chosen`` +
  ``rejected`` message lists that share their prompt turns (TRL's implicit form);
- completions: ``prompt`` + ``completion`` (+ ``label`` for KTO).

Every row becomes a ``Conversation``: user/assistant turns starting with a user turn, the
assistant replies to its last turn (pairs: chosen then rejected; completions: one, with its
label), and the system turn when there was one. A row that does not fit is refused with its
row number and column. Pure: rows in, conversations out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import msgspec

from domain.model.errors import DomainError, ErrorCode

FORMATS = ("prompts", "messages", "pairs", "completions")
PROMPT_COLUMNS = ("prompt", "instruction", "question", "text")
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
LABELS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}

_encoder = msgspec.json.Encoder(order="sorted")


class RowError(DomainError):
    """A file or one of its rows that cannot be imported (nothing is recorded)."""

    error_code = ErrorCode.VALIDATION_ERROR
    http_status = 422


def row_error(row: int, column: str | None, problem: str) -> RowError:
    where = f"row {row}" + (f", column {column!r}" if column else "")
    return RowError(f"{where}: {problem}")


@dataclass
class Conversation:
    turns: list[tuple[str, str]]  # (role, text), user first, alternating
    replies: list[tuple[str, bool | None]] = field(default_factory=list)  # (text, label)
    system: str | None = None
    lang: str | None = None
    form: str = "string"  # "string" or "conversational" (or "implicit" pairs)

    def digest(self) -> str:
        """The row's content, whatever file format carried it: its identity on re-import."""
        body = [self.turns, self.replies, self.system]
        return hashlib.sha256(_encoder.encode(body)).hexdigest()


def detect(columns: list[str]) -> str:
    """The format a file's columns say, or a RowError asking to name it."""
    have = set(columns)
    found = []
    if "messages" in have:
        found.append("messages")
    if {"chosen", "rejected"} <= have:
        found.append("pairs")
    if "completion" in have and "prompt" in have:
        found.append("completions")
    if not found and have & set(PROMPT_COLUMNS):
        found.append("prompts")
    if len(found) == 1:
        return found[0]
    named = ", ".join(sorted(have)) or "none"
    if not found:
        raise RowError(
            f"cannot tell the format from the columns ({named}); "
            f"name it with --format {'|'.join(FORMATS)}"
        )
    raise RowError(f"the columns ({named}) fit {' and '.join(found)}; name one with --format")


def shape_of(fmt: str, columns: list[str]) -> dict[str, str]:
    """Which columns a format reads from this file (kept so an export writes them back)."""
    have = set(columns)
    if fmt == "prompts":
        column = next((c for c in PROMPT_COLUMNS if c in have), None)
        if column is None:
            raise RowError(f"prompts need one of the columns {', '.join(PROMPT_COLUMNS)}")
        return {"prompt": column, **({"lang": "lang"} if "lang" in have else {})}
    required = {
        "messages": ("messages",),
        "pairs": ("chosen", "rejected"),
        "completions": ("prompt", "completion"),
    }[fmt]
    missing = [c for c in required if c not in have]
    if missing:
        raise RowError(f"{fmt} need the columns {', '.join(missing)}")
    shape = {c: c for c in required}
    if fmt == "pairs" and "prompt" in have:
        shape["prompt"] = "prompt"
    if fmt == "completions" and "label" in have:
        shape["label"] = "label"
    if "lang" in have:
        shape["lang"] = "lang"
    return shape


def _text(row: int, column: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise row_error(row, column, "needs a non-empty text")
    return value


def _turns(row: int, column: str, value: Any) -> tuple[list[tuple[str, str]], str | None]:
    """A message list as (role, text) turns and its leading system turn."""
    if not isinstance(value, list) or not value:
        raise row_error(row, column, "needs a non-empty list of {role, content} messages")
    turns, system = [], None
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise row_error(row, column, f"message {i} is not a {{role, content}} object")
        role = message.get("role")
        if role == "system" and i == 0:
            system = _text(row, column, message.get("content"))
            continue
        if role not in ROLES:
            raise row_error(row, column, f"message {i} has role {role!r} (user or assistant)")
        turns.append((ROLES[role], _text(row, column, message.get("content"))))
    return turns, system


def _alternating(row: int, column: str, turns: list[tuple[str, str]]) -> None:
    for i, (role, _) in enumerate(turns):
        if role != ("user" if i % 2 == 0 else "assistant"):
            raise row_error(
                row, column, f"turn {i} is {role}: turns must alternate, starting with user"
            )


def _prompt(row: int, column: str, value: Any) -> tuple[list[tuple[str, str]], str | None, str]:
    """A prompt as a string or a message list ending with a user turn."""
    if isinstance(value, str):
        return [("user", _text(row, column, value))], None, "string"
    turns, system = _turns(row, column, value)
    _alternating(row, column, turns)
    if not turns or turns[-1][0] != "user":
        raise row_error(row, column, "the prompt must end with a user turn")
    return turns, system, "conversational"


def _reply(row: int, column: str, value: Any, form: str) -> str:
    """One assistant reply: a string, or a list of one assistant message."""
    if form == "string":
        if not isinstance(value, str):
            raise row_error(row, column, "a string where the prompt is a string")
        return _text(row, column, value)
    turns, system = _turns(row, column, value)
    if system is not None or len(turns) != 1 or turns[0][0] != "assistant":
        raise row_error(row, column, "needs exactly one assistant message")
    return turns[0][1]


def _label(row: int, column: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in LABELS:
        return LABELS[value.strip().lower()]
    raise row_error(row, column, f"a label is true or false, not {value!r}")


def _implicit(row: int, chosen: Any, rejected: Any) -> Conversation:
    """TRL's implicit prompt: both lists share the prompt turns, then differ in one reply."""
    good, system = _turns(row, "chosen", chosen)
    bad, other = _turns(row, "rejected", rejected)
    if system != other or good[:-1] != bad[:-1]:
        raise row_error(row, "rejected", "does not share the chosen conversation's prompt turns")
    if len(good) < 2 or good[-1][0] != "assistant" or bad[-1][0] != "assistant":
        raise row_error(row, "chosen", "needs prompt turns followed by one assistant reply")
    _alternating(row, "chosen", good)
    return Conversation(
        good[:-1], [(good[-1][1], None), (bad[-1][1], None)], system, form="implicit"
    )


def read_row(fmt: str, shape: dict[str, str], row: int, item: dict[str, Any]) -> Conversation:
    """One row of the file as a Conversation (row: its 0-based index, for errors)."""
    if fmt == "prompts":
        column = shape["prompt"]
        turns, system = [("user", _text(row, column, item.get(column)))], None
        conversation = Conversation(turns, system=system)
    elif fmt == "messages":
        turns, system = _turns(row, "messages", item.get("messages"))
        _alternating(row, "messages", turns)
        conversation = Conversation(turns, system=system, form="conversational")
    elif fmt == "pairs" and "prompt" not in shape:
        conversation = _implicit(row, item.get("chosen"), item.get("rejected"))
    else:
        turns, system, form = _prompt(row, "prompt", item.get("prompt"))
        if fmt == "pairs":
            replies: list[tuple[str, bool | None]] = [
                (_reply(row, "chosen", item.get("chosen"), form), None),
                (_reply(row, "rejected", item.get("rejected"), form), None),
            ]
        else:
            label = _label(row, "label", item.get("label")) if "label" in shape else None
            replies = [(_reply(row, "completion", item.get("completion"), form), label)]
        conversation = Conversation(turns, replies, system, form=form)
    lang = item.get("lang")
    if lang is not None:
        if not isinstance(lang, str) or not 2 <= len(lang) <= 16:
            raise row_error(row, "lang", f"not a language code: {lang!r}")
        conversation.lang = lang
    return conversation
