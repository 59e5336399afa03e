from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.model.task_types import TaskType as T
from projections.availability import availability
from tests.projection_helpers import SPAM, World


def counts(world: World, user: str, now=None, lang="en"):
    return availability(world.conn, world.app.config, lang, world.uid(user), now)


def test_prompt_review_counts_exclude_author_and_earlier_reviewers(tmp_path):
    w = World(tmp_path)
    tree = w.prompt("a")
    assert counts(w, "a")[T.LABEL_INITIAL_PROMPT] == 0  # own prompt
    assert counts(w, "b")[T.LABEL_INITIAL_PROMPT] == 1
    assert counts(w, "b", lang="de")[T.LABEL_INITIAL_PROMPT] == 0
    w.label("b", tree, tree)
    assert counts(w, "b")[T.LABEL_INITIAL_PROMPT] == 0  # already labelled
    assert counts(w, "c")[T.LABEL_INITIAL_PROMPT] == 1
    w.label("cd", tree, tree)
    assert counts(w, "e")[T.LABEL_INITIAL_PROMPT] == 0  # decided: waiting for the lottery
    assert counts(w, "e")[T.ASSISTANT_REPLY] == 0  # not growing yet


def test_initial_prompt_formula(tmp_path):
    w = World(
        tmp_path,
        max_active_trees=2,
        max_initial_prompt_review=3,
        max_prompt_lottery_waiting=5,
        init_prompt_disabled_langs="xx",
    )
    assert counts(w, "a")[T.INITIAL_PROMPT] == min(2 + 3, 5)
    w.prompt("a", "one")
    assert counts(w, "a")[T.INITIAL_PROMPT] == min(2 + 2, 5)
    w.growing_tree("b", "cde")
    waiting = w.prompt("c", "waits")
    w.label("def", waiting, waiting)
    # growing 1, in review 1, waiting 1: min((2-1) + (3-1), 5-1)
    assert counts(w, "a")[T.INITIAL_PROMPT] == 3
    assert counts(w, "a", lang="xx")[T.INITIAL_PROMPT] == 0


def test_reply_counts_follow_extendible_parents(tmp_path):
    w = World(tmp_path, goal_tree_size=5)
    tree = w.growing_tree()
    assert counts(w, "a")[T.ASSISTANT_REPLY] == 1  # authors may reply below their prompt
    assert counts(w, "b")[T.PROMPTER_REPLY] == 0
    first = w.reply("e", tree, tree)
    assert counts(w, "e")[T.ASSISTANT_REPLY] == 0  # already replied
    assert counts(w, "f")[T.ASSISTANT_REPLY] == 1
    assert counts(w, "e")[T.LABEL_ASSISTANT_REPLY] == 0  # own reply
    assert counts(w, "f")[T.LABEL_ASSISTANT_REPLY] == 1
    w.reply("f", tree, tree)
    assert counts(w, "g")[T.ASSISTANT_REPLY] == 0  # max_children_count (2) replies
    w.label("bcd", tree, first)
    assert counts(w, "g")[T.PROMPTER_REPLY] == 1  # accepted assistant reply takes a prompter reply
    assert counts(w, "g")[T.LABEL_ASSISTANT_REPLY] == 1
    w.reply("g", tree, first)
    assert counts(w, "h")[T.PROMPTER_REPLY] == 0  # num_prompter_replies = 1
    assert counts(w, "h")[T.LABEL_PROMPTER_REPLY] == 1


def test_parent_with_only_rejected_children_stays_extendible(tmp_path):
    w = World(tmp_path, goal_tree_size=5)
    tree = w.growing_tree()
    for author in "ef":
        spam = w.reply(author, tree, tree, f"spam from {author}")
        w.label("bcd", tree, spam, SPAM)
    assert counts(w, "g")[T.ASSISTANT_REPLY] == 1  # OA dropped this parent
    assert counts(w, "g")[T.LABEL_ASSISTANT_REPLY] == 0


def test_tree_at_goal_size_is_not_extendible(tmp_path):
    w = World(tmp_path, goal_tree_size=3, max_children_count=3)
    tree = w.growing_tree()
    w.reply("e", tree, tree)
    assert counts(w, "g")[T.ASSISTANT_REPLY] == 1
    w.reply("f", tree, tree)  # root + 2 under review = goal
    assert counts(w, "g")[T.ASSISTANT_REPLY] == 0


def test_skips_and_reservations(tmp_path):
    w = World(tmp_path)
    tree = w.growing_tree()
    from domain.service.handout import Handout

    handout = Handout(
        w.app, w.runner.readmodel.reader, before_read=lambda: w.runner.catch_up(w.runner.log.head())
    )
    task = handout.request(w.uid("e"), T.ASSISTANT_REPLY)
    assert task.task.message_id == tree
    # An open reply task from the last recent_tasks_span_sec reserves the parent.
    assert counts(w, "f")[T.ASSISTANT_REPLY] == 0
    later = datetime.now(UTC) + timedelta(seconds=w.app.config.recent_tasks_span_sec + 1)
    assert counts(w, "f", now=later)[T.ASSISTANT_REPLY] == 1
    w.app.nack_task(user_id=w.uid("e"), task_id=task.id)
    assert counts(w, "f")[T.ASSISTANT_REPLY] == 1  # skipped: no longer reserved
    assert counts(w, "e")[T.ASSISTANT_REPLY] == 0  # but the skipper no longer sees it


def test_ranking_counts(tmp_path):
    w = World(tmp_path, goal_tree_size=3, max_children_count=3)
    tree = w.growing_tree()
    replies = [w.reply(author, tree, tree, f"reply {author}") for author in "ef"]
    assert counts(w, "g")[T.RANK_ASSISTANT_REPLIES] == 0  # still growing
    for reply in replies:
        w.label("bcd", tree, reply)
    assert w.app.get_tree(tree).state.value == "ranking"
    c = counts(w, "g")
    assert c[T.RANK_ASSISTANT_REPLIES] == 1 and c[T.RANK_PROMPTER_REPLIES] == 0
    assert counts(w, "e")[T.RANK_ASSISTANT_REPLIES] == 0  # own reply among them
    assert c[T.RANDOM] == sum(v for k, v in c.items() if k is not T.RANDOM)
    assert c[T.SUMMARIZE_STORY] == c[T.RATE_SUMMARY] == c[T.RANK_INITIAL_PROMPTS] == 0
    w.app.submit_ranking(
        actor=w.users["g"], tree_id=tree, parent_id=tree, ranked_message_ids=replies
    )
    assert counts(w, "g")[T.RANK_ASSISTANT_REPLIES] == 0  # already ranked
    assert counts(w, "h")[T.RANK_ASSISTANT_REPLIES] == 1
    w.app.submit_ranking(
        actor=w.users["a"], tree_id=tree, parent_id=tree, ranked_message_ids=replies[::-1]
    )
    assert counts(w, "h")[T.RANK_ASSISTANT_REPLIES] == 0  # complete (2 rankings)
    assert w.app.get_tree(tree).state.value == "ready_for_export"


def test_counting_writes_nothing(tmp_path):
    w = World(tmp_path)
    w.prompt("a")
    head = w.runner.log.head()
    for user in "abcdefgh":
        counts(w, user)
    assert w.runner.log.head() == head
