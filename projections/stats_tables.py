"""The tables of the user statistics projection (projections.stats), and the one statement
that adds to an hour row's counters."""

from __future__ import annotations

from functools import cache

from projections.stats_rules import FIELDS

TABLES = (
    "user_hours",
    "stats_messages",
    "stats_label_votes",
    "stats_emojis",
    "stats_tasks",
    "user_streaks",
)
DDL = (
    "CREATE TABLE IF NOT EXISTS user_hours (user_id TEXT NOT NULL, hour INTEGER NOT NULL, "
    + ", ".join(f"{f} INTEGER NOT NULL DEFAULT 0" for f in FIELDS)
    + ", PRIMARY KEY (user_id, hour)) WITHOUT ROWID",
    # counter: the one the message feeds (prompts / replies_<role>); counters: its emoji
    # counts and label sums, which count for the author while the message is not deleted.
    """CREATE TABLE IF NOT EXISTS stats_messages (
        message_id TEXT PRIMARY KEY, user_id TEXT, hour INTEGER NOT NULL, counter TEXT NOT NULL,
        deleted INTEGER NOT NULL, accepted INTEGER NOT NULL, spam_tree INTEGER NOT NULL,
        counters TEXT NOT NULL) WITHOUT ROWID""",
    # A user's latest free/report labels of a message, which a new submission replaces
    # (as in the messages projection); task labels are one per user and never replaced.
    """CREATE TABLE IF NOT EXISTS stats_label_votes (
        message_id TEXT NOT NULL, user_id TEXT NOT NULL, votes TEXT NOT NULL,
        PRIMARY KEY (message_id, user_id)) WITHOUT ROWID""",
    # Who clicked the emojis the troll board counts (+1, -1, red_flag).
    """CREATE TABLE IF NOT EXISTS stats_emojis (
        message_id TEXT NOT NULL, emoji TEXT NOT NULL, user_id TEXT NOT NULL,
        PRIMARY KEY (message_id, emoji, user_id)) WITHOUT ROWID""",
    # Open label tasks: a completed one counts in the hour it was issued (as OA).
    """CREATE TABLE IF NOT EXISTS stats_tasks (
        task_id TEXT PRIMARY KEY, mode TEXT NOT NULL, hour INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS user_streaks (
        user_id TEXT PRIMARY KEY, last_activity REAL NOT NULL, streak_start REAL,
        streak_days INTEGER NOT NULL) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS user_hours_hour ON user_hours (hour)",
)


@cache
def hours_upsert(names: tuple[str, ...]) -> str:
    """Add to these counters of an hour row (a batch has a few distinct sets of them)."""
    if not names:
        return "INSERT INTO user_hours (user_id, hour) VALUES (?, ?) ON CONFLICT DO NOTHING"
    return (
        f"INSERT INTO user_hours (user_id, hour, {', '.join(names)})"
        f" VALUES (?, ?, {', '.join('?' * len(names))}) ON CONFLICT (user_id, hour)"
        f" DO UPDATE SET {', '.join(f'{n} = {n} + excluded.{n}' for n in names)}"
    )
