"""How a caller names a point in a tree's history: a version number or a moment."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_as_of(text: str) -> tuple[int | None, datetime | None]:
    """(version, None) or (None, aware moment; naive times are UTC); ValueError otherwise."""
    text = text.strip()
    if text.isdigit():
        return int(text), None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"as of takes a version number or an ISO time, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return None, moment
