"""Turning user text and numbers into safe HTML: markdown and small SVG charts.

Markdown is rendered by markdown-it-py with raw HTML off, so a message's ``<script>``
or ``<img onerror=...>`` comes out as escaped text, and links with unsafe schemes
(``javascript:``) are refused by its link validator. Charts are inline SVG built from
numbers and escaped labels: no JavaScript, no external library.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from html import escape

from markdown_it import MarkdownIt
from markupsafe import Markup

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


CACHED_TEXT = 8192  # longer texts are rendered each time: the cache stays under ~40 MB


@lru_cache(maxsize=2048)
def _render_markdown(text: str) -> str:
    return _md.render(text)


def markdown_cache_clear() -> None:
    _render_markdown.cache_clear()


def markdown(text: str | None) -> Markup:
    """A message's text as HTML. Cached by text: a message is shown on many pages (a tree
    view, each ranking task of its siblings) and markdown-it costs 0.2 ms or more per
    message; the same text always gives the same HTML."""
    text = text or ""
    return Markup(_render_markdown(text) if len(text) <= CACHED_TEXT else _md.render(text))


def markdown_once(text: str | None) -> Markup:
    """``markdown`` without the cache, for text shown once (a draft's preview)."""
    return Markup(_md.render(text or ""))


def ago(moment: float | str | datetime | None) -> str:
    """A timestamp (seconds, ISO text or datetime) as UTC minutes."""
    if moment is None:
        return ""
    if isinstance(moment, (int, float)):
        when = datetime.fromtimestamp(moment, UTC)
    elif isinstance(moment, str):
        try:
            when = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    else:
        when = moment
    return when.strftime("%Y-%m-%d %H:%M")


def bar_chart(
    items: Sequence[tuple[str, float]], *, width: int = 520, bar: int = 18, unit: str = ""
) -> Markup:
    """Horizontal bars, one per (label, value); the longest bar is full width."""
    if not items:
        return Markup('<p class="muted">nothing yet</p>')
    top = max((v for _, v in items), default=0) or 1
    label_w, gap = 170, 4
    height = len(items) * (bar + gap)
    rows = []
    for i, (label, value) in enumerate(items):
        y = i * (bar + gap)
        w = max(1, int((width - label_w - 70) * value / top))
        rows.append(
            f'<text x="{label_w - 6}" y="{y + bar - 5}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar}" rx="3"></rect>'
            f'<text x="{label_w + w + 6}" y="{y + bar - 5}">{value:g}{escape(unit)}</text>'
        )
    return Markup(
        f'<svg class="chart" width="{width}" height="{height}" role="img" '
        f'viewBox="0 0 {width} {height}">{"".join(rows)}</svg>'
    )


def column_chart(
    values: Sequence[tuple[str, float]], *, width: int = 620, height: int = 140
) -> Markup:
    """Vertical columns over time (e.g. votes per hour), labels under the first and last."""
    if not values:
        return Markup('<p class="muted">nothing yet</p>')
    top = max(v for _, v in values) or 1
    step = width / len(values)
    cols = []
    for i, (label, value) in enumerate(values):
        h = (height - 20) * value / top
        cols.append(
            f'<rect x="{i * step + 1:.1f}" y="{height - 20 - h:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{h:.1f}"><title>{escape(label)}: {value:g}</title></rect>'
        )
    first, last = escape(values[0][0]), escape(values[-1][0])
    cols.append(f'<text x="0" y="{height - 4}">{first}</text>')
    cols.append(f'<text x="{width}" y="{height - 4}" text-anchor="end">{last}</text>')
    return Markup(
        f'<svg class="chart" width="{width}" height="{height}" role="img" '
        f'viewBox="0 0 {width} {height}">{"".join(cols)}</svg>'
    )


def line_chart(points: Sequence[float], *, width: int = 300, height: int = 80) -> Markup:
    """A training curve (loss per logged step) as a polyline."""
    if len(points) < 2:
        return Markup("")
    lo, hi = min(points), max(points)
    span = (hi - lo) or 1.0
    step = width / (len(points) - 1)
    coords = " ".join(
        f"{i * step:.1f},{height - 4 - (height - 8) * (p - lo) / span:.1f}"
        for i, p in enumerate(points)
    )
    return Markup(
        f'<svg class="curve" width="{width}" height="{height}" role="img" viewBox="0 0 {width} '
        f'{height}"><polyline fill="none" points="{coords}"></polyline></svg>'
    )
