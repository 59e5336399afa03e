"""What a model wrote, made fit to record as a reply.

A sampled token can decode to a control character (tiny or badly tuned models do this
often); the domain refuses NUL and control characters in message text, so a candidate
carrying one would be refused whole. Removing them keeps the candidate and records only
printable text, newlines and tabs.
"""

from __future__ import annotations

import unicodedata

_KEEP = {"\n", "\t"}


def clean_text(text: str) -> str:
    """The text without control characters (Unicode category Cc, newline and tab kept), stripped."""
    return "".join(c for c in text if c in _KEEP or unicodedata.category(c) != "Cc").strip()
