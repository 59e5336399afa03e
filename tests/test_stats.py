"""Per-user statistics, leaderboards, the troll board, streaks; rebuild equals live.

Expected numbers are worked out by hand from OA's formulas (reference §9) in each test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.bootstrap import open_app
from api.storage.logdb import log_location
from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.errors import DomainError, ErrorCode
from projections.leaderboard import (
    frame_totals,
    leaderboard,
    streaks,
    tree_state_counts,
    trollboard,
    user_stats,
    window_start,
)
from projections.log import SQLiteLog
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from projections.stats_rules import (
    FIELDS,
    LEVEL_THRESHOLDS,
    leader_score,
    level,
    next_streak,
    troll_score,
)
from projections.store import default_projections
from tests.projection_helpers import OK, SPAM, World, dump

DAY = 86400.0
HOUR = 3600.0
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def zeros(**values):
    return {f: 0 for f in FIELDS} | values


def label_task(
    w: World,
    user: str,
    tree,
    message,
    mode: str,
    labels=OK,
    task_type: str = "label_initial_prompt",
) -> None:
    """A label task handed out, acknowledged and done (what labels_simple/full count)."""
    task = w.app.issue_task(
        user_id=w.uid(user),
        task_type=task_type,
        tree_id=tree,
        message_id=message,
        payload={"mode": mode},
    )
    w.app.ack_task(user_id=w.uid(user), task_id=task.id, frontend_message_id=f"fm-{task.id}")
    w.app.submit_labels(
        actor=w.users[user], tree_id=tree, message_id=message, labels=labels, task_id=task.id
    )


def ranked_tree(w: World):
    """a's prompt (reviewed by b, c, d) with replies by e and f, ranked by g, h and c.

    g and h rank e's reply first, c ranks f's first: the consensus puts e's reply first.
    """
    tree = w.growing_tree("a", "bcd")
    r1, r2 = w.reply("e", tree, tree, "reply by e"), w.reply("f", tree, tree, "reply by f")
    w.label("bcd", tree, r1)
    w.label("bcd", tree, r2)
    for ranker, order in (("g", [r1, r2]), ("h", [r1, r2]), ("c", [r2, r1])):
        w.app.submit_ranking(
            actor=w.users[ranker], tree_id=tree, parent_id=tree, ranked_message_ids=order
        )
    return tree, r1, r2


# ---------------------------------------------------------------- formulas
def test_level_thresholds_are_oas():
    assert LEVEL_THRESHOLDS[:10] == (0, 4, 9, 16, 24, 32, 42, 53, 65, 79)
    assert len(LEVEL_THRESHOLDS) == 100 and LEVEL_THRESHOLDS[-1] == 6000
    assert [level(s) for s in (0, 3, 4, 100, 1000, 5999, 6000, 10**6)] == [
        1,
        1,
        2,
        11,
        39,
        99,
        100,
        100,
    ]


def test_leader_score_weights_by_hand():
    s = zeros(
        prompts=19,
        accepted_prompts=10,
        replies_assistant=2,
        replies_prompter=3,
        labels_simple=4,
        labels_full=5,
        rankings_total=6,
        accepted_replies_assistant=1,
        accepted_replies_prompter=2,
        reply_ranked_1=1,
        reply_ranked_2=2,
        reply_ranked_3=3,
    )
    # int(1.9) + 4*2 + 3 + 4 + 2*5 + 6 + int(1.0) + 4*1 + 2 + 9*1 + 3*2 + 3
    assert leader_score(s) == 1 + 8 + 3 + 4 + 10 + 6 + 1 + 4 + 2 + 9 + 6 + 3 == 57
    assert leader_score(zeros(prompts=9, accepted_prompts=9)) == 0  # 0.9 truncates to 0


def test_troll_score_by_hand():
    s = zeros(red_flags=2, upvotes=3, downvotes=1, spam_prompts=1, spam=5, lang_mismatch=1, pii=2)
    assert troll_score(s) == 3 * 2 - 3 + 1 + 1 + 1 + 2  # the spam label is not in OA's sum


def test_streak_rule():
    t = T0.timestamp()
    assert next_streak(None, None, t) == (0, t)  # first activity starts a streak
    assert next_streak(t, t, t + 20 * HOUR) == (0, t)  # the same day
    assert next_streak(t + 20 * HOUR, t, t + 40 * HOUR) == (1, t)  # whole days since the start
    assert next_streak(t + 40 * HOUR, t, t + 76 * HOUR) == (3, t)  # 36 h gap: still going
    assert next_streak(t + 40 * HOUR, t, t + 77 * HOUR) == (0, t + 77 * HOUR)  # 37 h: reset
    assert next_streak(t, t + DAY, t + HOUR) == (0, t + HOUR)  # a start in the future restarts


def test_window_starts():
    now = datetime(2024, 3, 10, 15, 30, tzinfo=UTC)
    assert window_start("day", now) == now - timedelta(days=1)
    assert window_start("week", now) == datetime(2024, 3, 3, tzinfo=UTC)
    assert window_start("month", now) == datetime(2024, 2, 9, tzinfo=UTC)
    assert window_start("total", now) is None
    with pytest.raises(DomainError) as info:
        window_start("year", now)
    assert info.value.error_code == ErrorCode.VALIDATION_ERROR


# ---------------------------------------------------------------- user stats
def test_user_stats_and_leaderboard(tmp_path):
    w = World(tmp_path, num_required_rankings=3)
    tree, r1, r2 = ranked_tree(w)
    second = w.prompt("a", "a second prompt")
    label_task(w, "b", second, second, "simple")
    label_task(w, "d", second, second, "full")
    now = datetime.now(UTC)
    totals = frame_totals(w.conn, "total", now)
    uid = {name: str(w.uid(name)) for name in "abcdefgh"}
    assert totals[uid["a"]] == zeros(prompts=2, accepted_prompts=1)
    # e: an accepted assistant reply, first in g's and h's rankings, second in c's.
    assert totals[uid["e"]] == zeros(
        replies_assistant=1, accepted_replies_assistant=1, reply_ranked_1=2, reply_ranked_2=1
    )
    assert totals[uid["f"]] == zeros(
        replies_assistant=1, accepted_replies_assistant=1, reply_ranked_1=1, reply_ranked_2=2
    )
    for ranker in "gh":
        assert totals[uid[ranker]] == zeros(rankings_total=1)
    assert totals[uid["c"]] == zeros(rankings_total=1)  # reviews without a task do not count
    assert totals[uid["b"]] == zeros(labels_simple=1)
    assert totals[uid["d"]] == zeros(labels_full=1)

    board = leaderboard(w.conn, "total", now)["leaderboard"]
    scores = {
        "e": 4 + 4 + 9 * 2 + 3,
        "f": 4 + 4 + 9 + 3 * 2,
        "d": 2,
        "b": 1,
        "c": 1,
        "g": 1,
        "h": 1,
        "a": 0,
    }  # a: int(0.2) + int(0.1) = 0, but a has stats: level 1
    expected = sorted(scores, key=lambda n: (-scores[n], uid[n]))
    assert [r["username"] for r in board] == expected
    assert [r["rank"] for r in board] == list(range(1, 9))
    assert [r["leader_score"] for r in board] == [scores[n] for n in expected]
    assert board[0]["level"] == 5 and board[-1]["level"] == 1  # 24 <= 29 < 32: five thresholds

    w.app.update_user(w.uid("e"), show_on_leaderboard=False)
    board = leaderboard(w.conn, "total", now, max_count=2)["leaderboard"]
    assert [r["username"] for r in board] == ["f", expected[2]]

    mine = user_stats(w.conn, w.uid("f"), now)
    assert set(mine) == {"day", "week", "month", "total"}
    assert mine["total"]["rank"] == 1 and mine["total"]["leader_score"] == 23
    assert mine["total"]["reply_ranked_2"] == 2 and mine["total"]["rankings_good"] == 0
    assert user_stats(w.conn, w.uid("e"), now)["total"]["rank"] is None  # hidden
    later = user_stats(w.conn, w.uid("f"), now + timedelta(days=40))
    assert later["day"]["level"] == 0 and later["day"]["rank"] is None  # no stats: level 0
    assert later["total"]["leader_score"] == 23


def test_time_frames_count_facts_by_their_own_date(tmp_path):
    w = World(tmp_path, num_required_rankings=3)
    ranked_tree(w)
    e = str(w.uid("e"))
    now = datetime.now(UTC)
    assert e in frame_totals(w.conn, "day", now)
    assert e not in frame_totals(w.conn, "day", now + timedelta(days=2))
    assert e in frame_totals(w.conn, "week", now + timedelta(days=2))
    assert e not in frame_totals(w.conn, "week", now + timedelta(days=10))
    assert e in frame_totals(w.conn, "month", now + timedelta(days=10))
    assert e not in frame_totals(w.conn, "month", now + timedelta(days=40))
    assert e in frame_totals(w.conn, "total", now + timedelta(days=40))
    assert leaderboard(w.conn, "day", now + timedelta(days=2))["leaderboard"] == []


def test_deletion_emojis_and_troll_board(tmp_path):
    w = World(tmp_path, num_required_rankings=3)
    tree, r1, r2 = ranked_tree(w)
    for emoji, voter, message in (
        ("-1", "b", r1),
        ("red_flag", "c", r2),
        ("+1", "d", r2),
        ("+1", "g", r1),
        ("-1", "g", r1),
    ):  # g changes their mind
        w.app.toggle_emoji(tree_id=tree, message_id=message, emoji=emoji, actor=w.users[voter])
    spam = w.prompt("h", "buy now")
    w.label("bcd", spam, spam, SPAM)  # rejected: the tree is aborted_low_grade
    now = datetime.now(UTC)
    e, f, h = (str(w.uid(n)) for n in "efh")
    totals = frame_totals(w.conn, "total", now)
    assert (totals[e]["upvotes"], totals[e]["downvotes"]) == (0, 2)
    assert (totals[f]["upvotes"], totals[f]["red_flags"]) == (1, 1)
    assert (totals[h]["spam_prompts"], totals[h]["spam"], totals[h]["prompts"]) == (1, 3, 1)
    board = {r["username"]: r for r in trollboard(w.conn, "total", now)["trollboard"]}
    assert board["f"]["troll_score"] == 3 * 1 - 1
    assert board["e"]["troll_score"] == 2
    assert board["h"]["troll_score"] == 1  # the spam prompt; the spam label is not in the sum
    first, second = sorted((e, f))  # equal scores: ranked by user id, as OA's ROW_NUMBER
    assert [r["user_id"] for r in trollboard(w.conn, "total", now)["trollboard"]][:3] == [
        first,
        second,
        h,
    ]

    w.app.delete_message(tree_id=tree, message_id=r1, actor=w.users["a"])
    totals = frame_totals(w.conn, "total", now)
    assert totals[e]["replies_assistant"] == totals[e]["downvotes"] == 0
    assert totals[e]["reply_ranked_1"] == 2  # individual rankings stay as submitted
    w.app.undelete_message(tree_id=tree, message_id=r1, actor=w.users["a"])
    totals = frame_totals(w.conn, "total", now)
    assert (
        totals[e]["replies_assistant"],
        totals[e]["accepted_replies_assistant"],
        totals[e]["downvotes"],
    ) == (1, 1, 2)


def test_free_labels_replace_and_feed_the_troll_means(tmp_path):
    w = World(tmp_path)
    tree = w.growing_tree("a", "bcd")
    for value in (1.0, 0.5):  # b's second report replaces the first
        w.app.submit_labels(
            actor=w.users["b"],
            tree_id=tree,
            message_id=tree,
            kind="report",
            labels={"pii": value, "quality": value},
        )
    w.app.submit_labels(
        actor=w.users["c"],
        tree_id=tree,
        message_id=tree,
        kind="free",
        labels={"pii": 0.4, "quality": 0.25},
    )
    now = datetime.now(UTC)
    row = {r["username"]: r for r in trollboard(w.conn, "total", now)["trollboard"]}["a"]
    assert row["pii"] == 1 + 0  # integer-cast like OA: 0.5 -> 1, 0.4 -> 0
    assert row["quality"] == pytest.approx((0.5 + 0.25) / 2)
    assert row["red_flags"] == 1  # a report flags the message; b's second report is no new flag
    assert row["troll_score"] == 3 * 1 + 1


def test_streaks_follow_completed_tasks(tmp_path):
    w = World(tmp_path)
    clock = [T0]
    w.app.clock = lambda: clock[0]
    user = w.uid("b")

    def task_at(hours: float) -> dict:
        clock[0] = T0 + timedelta(hours=hours)
        task = w.app.issue_task(user_id=user, task_type="initial_prompt")
        w.app.ack_task(user_id=user, task_id=task.id, frontend_message_id=f"fm-{task.id}")
        w.app.create_prompt(actor=w.users["b"], text=f"prompt at {hours}", task_id=task.id)
        return streaks(w.conn, clock[0] + timedelta(hours=1))[str(user)]

    assert task_at(0)["streak_days"] == 0
    assert task_at(20)["streak_days"] == 0
    assert task_at(40)["streak_days"] == 1
    state = task_at(76)
    assert state["streak_days"] == 3
    assert state["streak_last_day_date"] == T0.isoformat()
    assert state["last_activity_date"] == (T0 + timedelta(hours=76)).isoformat()
    gone = streaks(w.conn, T0 + timedelta(hours=76 + 37))[str(user)]
    assert gone["streak_days"] == 0 and gone["streak_last_day_date"] is None  # 36 h idle
    restarted = task_at(113)
    assert restarted["streak_days"] == 0
    assert restarted["streak_last_day_date"] == (T0 + timedelta(hours=113)).isoformat()
    stats = user_stats(w.conn, user, T0 + timedelta(hours=114))["total"]
    assert stats["streak_days"] == 0 and stats["prompts"] == 5


def test_bad_queries_get_typed_errors(tmp_path):
    w = World(tmp_path)
    now = datetime.now(UTC)
    for call in (
        lambda: leaderboard(w.conn, "year", now),
        lambda: leaderboard(w.conn, "total", now, max_count=0),
        lambda: trollboard(w.conn, "total", now, max_count=10001),
    ):
        with pytest.raises(DomainError) as info:
            call()
        assert info.value.error_code == ErrorCode.VALIDATION_ERROR
    with pytest.raises(DomainError) as info:
        user_stats(w.conn, "00000000-0000-0000-0000-000000000000", now)
    assert info.value.error_code == ErrorCode.USER_NOT_FOUND


def test_tree_state_counts_per_language(tmp_path):
    w = World(tmp_path)
    w.growing_tree("a", "bcd")
    w.prompt("b", "in review")
    w.app.create_prompt(actor=w.users["c"], text="hallo", lang="de")
    counts = tree_state_counts(w.conn)
    assert counts["state_counts"]["growing"] == 1
    assert counts["state_counts"]["initial_prompt_review"] == 2
    assert counts["state_counts"]["ready_for_export"] == 0
    assert counts["by_lang"]["de"]["initial_prompt_review"] == 1
    assert counts["by_lang"]["en"]["growing"] == 1


# ---------------------------------------------------------------- rebuild equals live
class SQLiteWorld(World):
    """World on a SQLite store, followed live in batches of three events."""

    def __init__(self, tmp_path, **config):
        defaults = dict(
            goal_tree_size=3, min_goal_tree_size=1, max_children_count=3, num_required_rankings=2
        )
        self.app = open_app(tmp_path, TreeConfig(**(defaults | config)))
        self.client, _ = self.app.register_client(name="test")
        self.users = {}
        for name in "abcdefgh":
            user_id = self.app.ensure_user(
                client_id=self.client, auth_method="local", username=name
            )
            self.users[name] = Actor(user_id, self.client)
        self.runner = ProjectionRunner(
            SQLiteLog(log_location(tmp_path)), tmp_path / "live.sqlite", batch_size=3
        )


MINE = ("user_stats", "model_stats", "agreement")
MY_TABLES = (
    "user_hours",
    "stats_messages",
    "stats_label_votes",
    "stats_emojis",
    "stats_tasks",
    "user_streaks",
    "model_replies",
    "model_pairs",
    "agreement_rankings",
    "ranking_agreement",
    "label_units",
    "label_totals",
)


def test_rebuild_equals_live_for_the_statistics_tables(tmp_path):
    w = SQLiteWorld(tmp_path)
    tree = w.growing_tree("a", "bcd")
    human = w.reply("e", tree, tree, "human reply")
    model = w.app.add_reply(
        actor=w.users["f"],
        tree_id=tree,
        parent_id=tree,
        text="model reply",
        synthetic=True,
        model_name="m1",
    ).id
    for message in (human, model):
        label_task(
            w,
            "b",
            tree,
            message,
            "full",
            {"spam": 0.0, "quality": 0.75},
            task_type="label_assistant_reply",
        )
        w.conn  # noqa: B018 - follow live between commands
        # One review per catch-up: each unit passes through every size (1, 2, 3) live.
        for reviewer in "cd":
            w.label(reviewer, tree, message, {"spam": 0.0, "lang_mismatch": 0.0, "quality": 0.3})
            w.conn  # noqa: B018
    w.app.submit_labels(
        actor=w.users["g"], tree_id=tree, message_id=human, kind="report", labels={"pii": 1.0}
    )
    w.app.submit_labels(
        actor=w.users["g"],
        tree_id=tree,
        message_id=human,
        kind="report",
        labels={"pii": 0.0, "toxicity": 0.7},
    )
    w.app.toggle_emoji(tree_id=tree, message_id=model, emoji="red_flag", actor=w.users["h"])
    for ranker, order in (("g", [model, human]), ("h", [human, model])):
        w.app.submit_ranking(
            actor=w.users[ranker], tree_id=tree, parent_id=tree, ranked_message_ids=order
        )
        w.conn  # noqa: B018
    w.app.delete_message(tree_id=tree, message_id=human, actor=w.users["a"])
    spam = w.prompt("h", "spam prompt")
    w.label("bcd", spam, spam, SPAM)
    live = dump(w.conn)
    assert live["ranking_agreement"] and live["model_pairs"] and live["label_units"]
    assert all(units for _, _, units, *_ in live["label_totals"])  # sizes passed leave no row
    assert live["stats_label_votes"] and live["user_streaks"]
    assert {t for p in default_projections() if p.name in MINE for t in p.tables} == set(MY_TABLES)

    log = SQLiteLog(log_location(tmp_path))
    rebuild(log, tmp_path / "rebuilt.sqlite")
    rebuilt = dump(ProjectionRunner(log, tmp_path / "rebuilt.sqlite").readmodel.reader())
    # The same log handed to the handlers as domain events instead of decoded views.
    plain = default_projections()
    for projection in plain:
        if projection.name in MINE:
            projection.views = False
    runner = ProjectionRunner(log, tmp_path / "plain.sqlite", plain, batch_size=7)
    runner.run_once()
    again = dump(runner.readmodel.reader())
    for table in MY_TABLES:
        assert live[table] == rebuilt[table] == again[table], table
