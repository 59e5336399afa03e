"""Open-Assistant's rules for user statistics: counters, scores, levels, streaks.

Pure functions and constants shared by the statistics projection (projections.stats)
and its queries (projections.leaderboard); reference §9.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from itertools import accumulate

HOUR = 3600.0
DAY = 86400.0
# OA's periodic job resets the streak of users inactive for more than 36 hours.
STREAK_TIMEOUT = 36 * HOUR

LEADER_FIELDS = (
    "prompts",
    "accepted_prompts",
    "replies_assistant",
    "replies_prompter",
    "accepted_replies_assistant",
    "accepted_replies_prompter",
    "labels_simple",
    "labels_full",
    "rankings_total",
    "reply_ranked_1",
    "reply_ranked_2",
    "reply_ranked_3",
)
# Labels whose values others gave a user's messages add to the troll score (integer-cast).
TROLL_LABELS = (
    "spam",
    "lang_mismatch",
    "not_appropriate",
    "pii",
    "hate_speech",
    "sexual_content",
    "political_content",
)
# Labels the troll board shows as means. Their sums are integers in units of 1/LABEL_SCALE:
# exact, so the rows do not depend on how the log was batched.
LABEL_SCALE = 10_000
MEAN_LABELS = ("quality", "humor", "toxicity", "violence", "helpfulness")
TROLL_FIELDS = (
    ("upvotes", "downvotes", "red_flags", "spam_prompts")
    + TROLL_LABELS
    + tuple(f"{n}_{k}" for n in MEAN_LABELS for k in ("sum", "n"))
)
FIELDS = LEADER_FIELDS + TROLL_FIELDS

# Level = number of thresholds <= score (OA get_thresholds): 0, 4, 9, 16, 24, ... 6000.
LEVEL_THRESHOLDS: tuple[int, ...] = (0,) + tuple(
    round(x) for x in accumulate(i * 1.1521 + 3 for i in range(1, 100))
)


def hour_of(seconds: float) -> int:
    return math.floor(seconds / HOUR)


def label_int(value: float) -> int:
    """A label value cast to an integer as Postgres casts OA's JSON numbers (half away from 0)."""
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)


# label -> (counter, count counter): troll labels add their integer value, mean labels
# their scaled value and a count.
_LABEL_COUNTERS = {
    **{label: (label, None) for label in TROLL_LABELS},
    **{label: (f"{label}_sum", f"{label}_n") for label in MEAN_LABELS},
}


def label_votes(labels: Mapping[str, float]) -> dict[str, int]:
    """One submission's share of the troll counters (zeros left out)."""
    out: dict[str, int] = {}
    targets = _LABEL_COUNTERS
    for label, value in labels.items():
        target = targets.get(label)
        if target is None:
            continue
        key, count_key = target
        if count_key is None:
            if value and (v := label_int(value)):  # most troll labels are 0
                out[key] = v
        else:
            out[count_key] = 1
            if v := round(value * LABEL_SCALE):
                out[key] = v
    return out


def next_streak(
    last_activity: float | None, streak_start: float | None, now: float
) -> tuple[int, float]:
    """OA's streak rule at a completed task: (streak_days, streak_start) afterwards.

    OA's periodic job clears the streak of a user inactive for more than 36 hours; at the
    next activity that reset has happened, so the streak starts again. A missing (or future)
    start begins a new streak of 0 days; otherwise the streak is the whole days since it began.
    """
    if last_activity is not None and last_activity < now - STREAK_TIMEOUT:
        streak_start = None
    if streak_start is None or streak_start > now:
        return 0, now
    return int((now - streak_start) // DAY), streak_start


def leader_score(s: Mapping[str, float]) -> int:
    """OA's UserStats.compute_leader_score (rankings_good is never computed: 0)."""
    return int(
        int(s["prompts"] * 0.1)
        + s["replies_assistant"] * 4
        + s["replies_prompter"]
        + s["labels_simple"]
        + s["labels_full"] * 2
        + s["rankings_total"]
        + int(s["accepted_prompts"] * 0.1)
        + s["accepted_replies_assistant"] * 4
        + s["accepted_replies_prompter"]
        + s["reply_ranked_1"] * 9
        + s["reply_ranked_2"] * 3
        + s["reply_ranked_3"]
    )


def level(score: int) -> int:
    """Number of level thresholds the score reaches: 0 -> 1, 100 -> 11, 1000 -> 39."""
    return bisect_right(LEVEL_THRESHOLDS, score)


def troll_score(s: Mapping[str, float]) -> int:
    """OA's TrollStats.compute_troll_score."""
    return int(
        3 * s["red_flags"]
        - s["upvotes"]
        + s["downvotes"]
        + s["spam_prompts"]
        + sum(s[label] for label in TROLL_LABELS if label != "spam")
    )


def has_leader_stats(s: Mapping[str, float]) -> bool:
    return any(s[f] for f in LEADER_FIELDS)


def has_troll_stats(s: Mapping[str, float]) -> bool:
    return any(s[f] for f in TROLL_FIELDS)
