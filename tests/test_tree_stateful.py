"""Stateful model test of the tree rules: random command sequences against one DataEngine.

Each step sends one command (or a short burst) to the in-memory application, valid or not.
An oracle restating the OA rules names the errors a command may raise; an empty set means
it must succeed. Anything but a DomainError fails the test, a rejected command must leave the
store and the cached aggregates untouched, and after every step the invariants at the end
hold for every tree. Ids come from fixed pools so hypothesis can shrink failures.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from uuid import UUID

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from domain.model import errors as E
from domain.model.actor import Actor
from domain.model.config import TreeConfig
from domain.model.consensus import consensus
from domain.model.labels import LABEL_NAMES
from domain.model.message import SKIP_REPLY, USER_EMOJIS, Role
from domain.model.states import ALLOWED_TRANSITIONS, HALTABLE_STATES, REPLY_STATES
from domain.model.states import TreeState as S
from domain.model.tree import ConversationTree as Tree
from domain.service.application import DataEngine

CONFIG = TreeConfig(
    goal_tree_size=4,
    min_goal_tree_size=1,
    max_tree_depth=3,
    num_reviews_initial_prompt=2,
    num_reviews_reply=2,
    num_required_rankings=2,
    auto_mod_red_flags=3,
    auto_mod_max_skip_reply=3,
)
CLIENT = UUID(int=0xC11E)
MODERATOR = Actor(UUID(int=0x30D), CLIENT)
TREE_IDS = [UUID(int=0x7000 + i) for i in range(3)]
GHOST = UUID(int=0xDEAD)  # never a message of any tree
WORKING_STATES = {
    S.INITIAL_PROMPT_REVIEW,
    S.PROMPT_LOTTERY_WAITING,
    S.GROWING,
    S.RANKING,
    S.BACKLOG_RANKING,
}
N_USERS = 6
NOW = datetime(2024, 1, 1, tzinfo=UTC)


class Long(str):
    """A text over the size limit that prints short in hypothesis reports."""

    def __repr__(self) -> str:
        return f"Long({len(self)})"


ix = st.integers(0, 255)
users = st.integers(0, N_USERS - 1)
texts = st.sampled_from(
    [
        "hello",
        "how so?",
        "tell me more",
        "sure",
        "thanks",
        "why?",
        "go on",
        "ok then",
        "",
        "   ",
        Long("x" * 2001),
    ]
)
goals = st.sampled_from([None, None, 3, 3, 2, 1])  # None: the config goal, 4
good_values = st.sampled_from([0.0] * 10 + [0.25, 1.0])
any_values = st.sampled_from([0.0, 0.0, 0.0, 0.25, 0.5, 1.0, -0.5, 1.5, math.nan, math.inf])
moves = st.fixed_dictionaries(
    {
        "kind": st.integers(0, 4),
        "pick": ix,
        "who": ix,
        "text": texts,
        "widen": st.sampled_from([True, True, False]),
        "reviews": st.sampled_from([0, 1, 2, 2]),
        "spam": good_values,
        "mismatch": good_values,
        "order": st.randoms(use_true_random=False),
    }
)
NOTHING = "nothing recorded"


def text_errors(text: str) -> set[type]:
    if not text.strip():
        return {E.TextEmptyError}
    return {E.TextTooLongError} if len(text) > CONFIG.message_size_limit else set()


def live(tree: Tree, m) -> bool:
    return m.review_result is True and not m.deleted


def rankable(tree: Tree, parent) -> list:
    children = [tree.messages[c] for c in parent.children]
    return [c for c in children if live(tree, c) and c.role is Role.ASSISTANT]


def snapshot(tree: Tree) -> dict:
    """Everything replay must rebuild: as_dict plus the per-message detail it leaves out."""
    view = tree.as_dict()
    view.update(
        halted_from=tree.halted_from,
        won_lottery_at=tree.won_lottery_at,
        max_depth=tree.max_depth,
        max_children_count=tree.max_children_count,
    )
    view["detail"] = {
        m.id: (
            m.reviews,
            m.free_labels,
            {k: frozenset(v) for k, v in m.emojis.items()},
            m.rankings,
            m.review_score,
            m.revision,
            m.client_id,
            m.created_at,
        )
        for m in tree.messages.values()
    }
    return view


class TreeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.app = DataEngine(config=CONFIG, clock=lambda: NOW)
        self.users = [
            self.app.ensure_user(client_id=CLIENT, auth_method="local", username=f"u{i}")
            for i in range(N_USERS)
        ]
        self.message_seq = 0
        self._views_cache: list | None = None

    # ------------------------------------------------------------------ plumbing
    def actor(self, u: int) -> Actor:
        return Actor(self.users[u], CLIENT)

    def tree(self, tree_id: UUID) -> Tree | None:
        try:
            return self.app.get_tree(tree_id)
        except E.TreeNotFoundError:
            return None

    def views(self) -> list[tuple[Tree, list]]:
        if self._views_cache is None:
            self._views_cache = [
                (tree, list(self.app.events.get(tree.id)))
                for tree in map(self.tree, TREE_IDS)
                if tree is not None
            ]
        return self._views_cache

    def choose_tree(self, pick: int) -> tuple[UUID, Tree | None]:
        """Mostly an existing tree, sometimes one that does not exist."""
        existing = [tree.id for tree, _ in self.views()]
        pool = existing * 4 + [t for t in TREE_IDS if t not in existing][:1] or TREE_IDS
        tree_id = pool[pick % len(pool)]
        return tree_id, self.tree(tree_id)

    def choose_message(self, tree: Tree | None, pick: int) -> UUID:
        pool = ([*tree.messages] if tree is not None else []) + [GHOST]
        return pool[pick % len(pool)]

    def capture(self) -> dict:
        state: dict = {"log": self.app.recorder.max_notification_id()}
        for tree_id in TREE_IDS:
            tree = self.tree(tree_id)
            state[tree_id] = (
                len(self.app.recorder.select_events(tree_id)),
                snapshot(tree) if tree else None,
            )
        return state

    def send(self, name: str, command, errors: set[type], expect) -> bool:
        """Run a command; errors: what the oracle allows (empty: must succeed).

        expect: NOTHING, or [(tree id, event class or None for 'no tree event', attrs)]."""
        self._views_cache = None
        before = self.capture()
        try:
            command()
        except E.DomainError as error:
            assert self.capture() == before, f"rejected {name} ({error!r}) changed something"
            assert errors, f"{name} was valid but got refused: {error!r}"
            assert type(error) in errors, f"{name}: {error!r}, oracle allows {errors}"
            event(f"{name} refused")
            return False
        assert not errors, f"{name} succeeded although it breaks {errors}"
        event(f"{name} ok")
        if expect is None:
            return True
        if expect == NOTHING:
            assert self.app.recorder.max_notification_id() == before["log"], name
            return True
        for tree_id, cls, attrs in expect:
            new = list(self.app.events.get(tree_id, gt=before[tree_id][0]))
            if cls is None:
                assert not new, f"{name} recorded {new} on {tree_id}"
                continue
            assert new and type(new[0]) is cls, f"{name}: expected {cls.__name__}, got {new[:1]}"
            for key, value in attrs.items():
                got = getattr(new[0], key)
                assert (set(got) if isinstance(value, set) else got) == value, (name, key, got)
        return True

    # ------------------------------------------------------------------ commands + oracle
    def create(self, tree_i: int, u: int, text: str, goal: int | None) -> None:
        tree_id, actor = TREE_IDS[tree_i], self.actor(u)
        existing = self.tree(tree_id)
        errors, expect = text_errors(text), [(tree_id, Tree.TreeStarted, {"text": text})]
        if existing is not None:
            same = existing.root.user_id == actor.user_id and existing.root.text == text
            errors, expect = (set(), NOTHING) if same else ({E.MessageAlreadyExistsError}, None)
        self.send(
            "create_prompt",
            lambda: self.app.create_prompt(
                actor=actor, text=text, message_id=tree_id, goal_tree_size=goal
            ),
            errors,
            expect,
        )

    def reply(
        self, tree_id: UUID, parent_id: UUID, u: int, text: str, role=None, reuse: bool = False
    ) -> None:
        tree, actor = self.tree(tree_id), self.actor(u)
        new_id = UUID(int=0x9000 + self.message_seq)
        self.message_seq += 1
        if reuse and tree is not None:
            new_id = [*tree.messages][self.message_seq % len(tree.messages)]
        errors, expect = self.reply_errors(tree, parent_id, actor, role, text), None
        if tree is not None and new_id in tree.messages:
            m = tree.messages[new_id]
            if m.parent_id == parent_id and m.user_id == actor.user_id and m.text == text:
                errors, expect = set(), NOTHING
            else:
                errors.add(E.MessageAlreadyExistsError)
        elif not errors:
            expect = [(tree_id, Tree.ReplyAdded, {"message_id": new_id, "parent_id": parent_id})]
        self.send(
            "add_reply",
            lambda: self.app.add_reply(
                actor=actor,
                tree_id=tree_id,
                parent_id=parent_id,
                text=text,
                role=role,
                message_id=new_id,
            ),
            errors,
            expect,
        )

    @staticmethod
    def active(tree: Tree, parent) -> list:
        """The replies that count against the limits: not deleted, not rejected."""
        children = [tree.messages[c] for c in parent.children]
        return [c for c in children if not c.deleted and c.review_result is not False]

    @staticmethod
    def limit(tree: Tree, parent) -> int:
        if parent.role is Role.ASSISTANT:
            return min(tree.max_children_count, CONFIG.num_prompter_replies)
        return tree.max_children_count

    def reply_errors(self, tree, parent_id, actor, role, text) -> set[type]:
        if tree is None:
            return {E.TreeNotFoundError}
        if parent_id not in tree.messages:
            return {E.MessageNotFoundError}
        parent, errors = tree.messages[parent_id], text_errors(text)
        children = [tree.messages[c] for c in parent.children]
        checks = {
            E.TreeInAbortedStateError: tree.state not in REPLY_STATES,
            E.MessageDeletedError: parent.deleted,
            E.ParentNotAcceptedError: parent.review_result is not True,
            E.InvalidRoleError: role is not None and Role(role) is parent.role,
            E.MaxDepthExceededError: parent.depth >= tree.max_depth,
            E.MaxChildrenExceededError: len(self.active(tree, parent)) >= self.limit(tree, parent),
            E.DuplicateReplyError: any(c.user_id == actor.user_id for c in children),
        }
        return errors | {error for error, broken in checks.items() if broken}

    def labels(
        self,
        tree_id: UUID,
        message_id: UUID,
        u: int,
        labels: dict,
        kind: str = "task",
        valid=None,
        mandatory=None,
    ) -> None:
        tree, actor = self.tree(tree_id), self.actor(u)
        errors: set[type] = set()
        if tree is None or message_id not in tree.messages:
            errors = {E.TreeNotFoundError if tree is None else E.MessageNotFoundError}
        else:
            m = tree.messages[message_id]
            bad_value = any(
                isinstance(v, bool) or not 0 <= v <= 1 or not math.isfinite(v)
                for v in labels.values()
            )
            review_state = S.INITIAL_PROMPT_REVIEW if m.parent_id is None else S.GROWING
            checks = {
                E.InvalidLabelError: kind not in ("task", "free", "report")
                or not labels
                or not set(labels) <= LABEL_NAMES,
                E.LabelValueOutOfRangeError: bad_value,
            }
            if kind == "task":
                checks[E.InvalidLabelError] |= valid is not None and not set(labels) <= valid
                checks.update(
                    {
                        E.MessageDeletedError: m.deleted,
                        E.SelfLabelingError: m.user_id == actor.user_id,
                        E.DuplicateLabelError: actor.user_id in m.reviews,
                        E.NotUnderReviewError: tree.state is not review_state
                        or m.review_result is not None,
                        E.MandatoryLabelMissingError: bool(mandatory and mandatory - set(labels)),
                    }
                )
            if kind == "free":  # one's own message is refused free too (issue 13)
                checks[E.SelfLabelingError] = m.user_id == actor.user_id
            errors = {error for error, broken in checks.items() if broken}
        expect = [(tree_id, Tree.LabelsSubmitted, {"message_id": message_id, "kind": kind})]
        self.send(
            f"labels/{kind}",
            lambda: self.app.submit_labels(
                actor=actor,
                tree_id=tree_id,
                message_id=message_id,
                labels=labels,
                kind=kind,
                valid_labels=valid,
                mandatory_labels=mandatory,
            ),
            errors,
            expect,
        )

    def ranking(self, tree_id: UUID, parent_id: UUID, u: int, order: list[UUID]) -> None:
        tree, actor = self.tree(tree_id), self.actor(u)
        if tree is None or parent_id not in tree.messages:
            errors = {E.TreeNotFoundError if tree is None else E.MessageNotFoundError}
        else:
            parent = tree.messages[parent_id]
            children = rankable(tree, parent)
            checks = {
                E.TreeNotInRankingStateError: tree.state is not S.RANKING,
                E.NoRepliesFoundError: len(children) < 2,
                E.InvalidRankingError: sorted(order) != sorted(c.id for c in children),
                E.SelfRankingError: any(c.user_id == actor.user_id for c in children),
                E.DuplicateRankingError: any(r == actor.user_id for r, _, _ in parent.rankings),
                E.RankingCompleteError: len(parent.rankings) >= CONFIG.num_required_rankings,
            }
            errors = {error for error, broken in checks.items() if broken}
        expect = [
            (tree_id, Tree.RankingSubmitted, {"parent_id": parent_id, "ranked_message_ids": order})
        ]
        self.send(
            "submit_ranking",
            lambda: self.app.submit_ranking(
                actor=actor, tree_id=tree_id, parent_id=parent_id, ranked_message_ids=order
            ),
            errors,
            expect,
        )

    def missing(self, tree: Tree | None, message_id: UUID) -> set[type]:
        if tree is None:
            return {E.TreeNotFoundError}
        return set() if message_id in tree.messages else {E.MessageNotFoundError}

    # ------------------------------------------------------------------ rules that make progress
    def review_targets(self) -> list[tuple[UUID, UUID, list[int]]]:
        found = []
        for tree, _ in self.views():
            for m in tree.messages.values():
                state = S.INITIAL_PROMPT_REVIEW if m.parent_id is None else S.GROWING
                reviewers = [
                    u
                    for u in range(N_USERS)
                    if self.users[u] != m.user_id and self.users[u] not in m.reviews
                ]
                if tree.state is state and m.review_result is None and not m.deleted and reviewers:
                    found.append((tree.id, m.id, reviewers))
        return found

    def open_parents(self) -> list[tuple[UUID, UUID, list[int]]]:
        found = []
        for tree, _ in self.views():
            if tree.state is not S.GROWING:
                continue
            for m in tree.messages.values():
                if self.reply_errors(tree, m.id, Actor(None), None, "x"):
                    continue
                authors = {tree.messages[c].user_id for c in m.children}
                writers = [u for u in range(N_USERS) if self.users[u] not in authors]
                if writers:
                    found.append((tree.id, m.id, writers))
        return found

    def rank_targets(self) -> list[tuple[UUID, UUID, list[int]]]:
        found = []
        for tree, _ in self.views():
            for m in tree.messages.values():
                children = rankable(tree, m)
                rankers = [
                    u
                    for u in range(N_USERS)
                    if all(c.user_id != self.users[u] for c in children)
                    and all(r != self.users[u] for r, _, _ in m.rankings)
                ]
                if (
                    tree.state is S.RANKING
                    and len(children) > 1
                    and not m.deleted
                    and rankers
                    and len(m.rankings) < CONFIG.num_required_rankings
                ):
                    found.append((tree.id, m.id, rankers))
        return found

    @initialize(u=users, goal=goals)
    def first_prompt(self, u: int, goal: int | None) -> None:
        self.create(0, u, "What makes a good question?", goal)

    # Progress rules do a burst of valid-looking commands (each checked on its own), so a run
    # of 40 steps gets trees through review, growth and ranking despite the noise rules.
    def review_burst(
        self, tree_id: UUID, message_id: UUID, pick: int, count: int, verdict: tuple[float, float]
    ) -> None:
        for k in range(count):  # reviews by different users, as long as it is under review
            reviewers = {m: r for _, m, r in self.review_targets()}.get(message_id)
            if not reviewers:
                break
            spam, mismatch = verdict
            self.labels(
                tree_id,
                message_id,
                reviewers[(pick + k) % len(reviewers)],
                {"spam": spam, "lang_mismatch": mismatch},
            )

    def progress_options(self) -> list[str]:
        waiting = any(t.state is S.PROMPT_LOTTERY_WAITING for t, _ in self.views())
        checks = {
            "review": self.review_targets,
            "grow": self.open_parents,
            "lottery": lambda: waiting,
            "rank": self.rank_targets,
            "curate": lambda: self.curate_targets()[0],
        }
        return [name for name, check in checks.items() if check()]

    def curate_targets(self) -> tuple[list, list]:
        """Replies of growing trees a moderator may delete, and deleted ones to restore."""
        live_replies, removed = [], []
        for tree, _ in self.views():
            for m in tree.messages.values() if tree.state is S.GROWING else ():
                if m.parent_id and not m.deleted:
                    live_replies.append((tree.id, m.id))
                elif m.parent_id and not tree.messages[m.parent_id].deleted:
                    removed.append((tree.id, m.id))
        return live_replies, removed

    # Progress rules, each preferring its own kind of move but falling back to any other:
    # hypothesis disables random subsets of rules per run (swarm testing), and a run that lost
    # e.g. the lottery must still be able to reach ranking. Five of them, against six noise
    # rules, give the happy path enough of the 40 steps. Curating (a moderator deleting and
    # restoring replies while the tree grows) is part of it: restored replies count again.
    @precondition(lambda self: self.progress_options())
    @rule(move=moves)
    def review_step(self, move: dict) -> None:
        self.advance("review", move)

    @precondition(lambda self: self.progress_options())
    @rule(move=moves)
    def grow_step(self, move: dict) -> None:
        self.advance("grow", move)

    @precondition(lambda self: self.progress_options())
    @rule(move=moves)
    def lottery_step(self, move: dict) -> None:
        self.advance("lottery", move)

    @precondition(lambda self: self.progress_options())
    @rule(move=moves)
    def rank_step(self, move: dict) -> None:
        self.advance("rank", move)

    @precondition(lambda self: self.progress_options())
    @rule(move=moves)
    def curate_step(self, move: dict) -> None:
        self.advance("curate", move)

    def advance(self, prefer: str, move: dict) -> None:
        options = self.progress_options()
        kind = prefer if prefer in options else options[move["kind"] % len(options)]
        pick, who = move["pick"], move["who"]
        verdict = (move["spam"], move["mismatch"])
        if kind == "review":
            tree_id, message_id, _ = self.review_targets()[pick % len(self.review_targets())]
            self.review_burst(tree_id, message_id, who, max(1, move["reviews"]), verdict)
        elif kind == "grow":  # reply to an open parent, then review the reply
            parents = self.open_parents()
            if move["widen"]:  # answer a prompter message, so that siblings to rank appear
                parents = [
                    (t, m, w)
                    for t, m, w in parents
                    if self.tree(t).messages[m].role is Role.PROMPTER
                ] or parents
            tree_id, parent_id, writers = parents[pick % len(parents)]
            self.reply(tree_id, parent_id, writers[who % len(writers)], move["text"])
            new_id = UUID(int=0x9000 + self.message_seq - 1)
            self.review_burst(tree_id, new_id, who, move["reviews"], verdict)
        elif kind == "curate":
            live_replies, removed = self.curate_targets()
            restore = removed and who % 2
            tree_id, message_id = (removed if restore else live_replies)[
                pick % len(removed if restore else live_replies)
            ]
            self.moderate(tree_id, message_id, "undelete" if restore else "delete")
        elif kind == "lottery":
            waiting = [t.id for t, _ in self.views() if t.state is S.PROMPT_LOTTERY_WAITING]
            self.activate(waiting[pick % len(waiting)])
        else:
            tree_id, parent_id, _ = self.rank_targets()[pick % len(self.rank_targets())]
            for k in range(max(1, move["reviews"])):
                rankers = {m: r for _, m, r in self.rank_targets()}.get(parent_id)
                if not rankers:
                    break
                tree = self.tree(tree_id)
                ids = [c.id for c in rankable(tree, tree.messages[parent_id])]
                move["order"].shuffle(ids)
                self.ranking(tree_id, parent_id, rankers[(who + k) % len(rankers)], ids)

    # ------------------------------------------------------------------ rules: anything goes
    @rule(tree=st.integers(0, len(TREE_IDS) - 1), u=users, text=texts, goal=goals)
    def create_prompt(self, tree: int, u: int, text: str, goal: int | None) -> None:
        self.create(tree, u, text, goal)

    def activate(self, tree_id: UUID) -> None:
        tree = self.tree(tree_id)
        errors = {E.TreeNotFoundError} if tree is None else set()
        if tree is not None and tree.state not in (S.PROMPT_LOTTERY_WAITING, S.BACKLOG_RANKING):
            errors = {E.InvalidStateTransitionError}
        expect = [(tree_id, Tree.StateChanged, {"from_state": tree and tree.state})]
        self.send("activate", lambda: self.app.activate_tree(tree_id=tree_id), errors, expect)

    @rule(
        pick=ix,
        msg=ix,
        u=users,
        text=texts,
        role=st.sampled_from([None, None, None, "prompter", "assistant"]),
        reuse=st.sampled_from([False] * 5 + [True]),
    )
    def add_reply_any(self, pick, msg, u, text, role, reuse) -> None:
        tree_id, tree = self.choose_tree(pick)
        self.reply(tree_id, self.choose_message(tree, msg), u, text, role, reuse)

    @rule(
        pick=ix,
        msg=ix,
        u=users,
        spam=any_values,
        mismatch=any_values,
        shape=st.sampled_from(["both", "both", "spam", "quality", "bogus", "empty"]),
        kind=st.sampled_from(["task", "task", "task", "free", "report", "vote"]),
        valid=st.sampled_from([None, None, frozenset({"spam", "lang_mismatch"})]),
        mandatory=st.sampled_from([None, None, frozenset({"spam"})]),
    )
    def submit_labels_any(self, pick, msg, u, spam, mismatch, shape, kind, valid, mandatory):
        tree_id, tree = self.choose_tree(pick)
        labels = {
            "both": {"spam": spam, "lang_mismatch": mismatch},
            "spam": {"spam": spam},
            "quality": {"quality": mismatch, "lang_mismatch": spam},
            "bogus": {"spam": spam, "bogus": 0.0},
            "empty": {},
        }[shape]
        self.labels(tree_id, self.choose_message(tree, msg), u, labels, kind, valid, mandatory)

    @rule(
        pick=ix,
        msg=ix,
        u=users,
        data=st.data(),
        mode=st.sampled_from(["rankable", "rankable", "all", "drop", "twice", "ghost"]),
    )
    def submit_ranking_any(self, pick, msg, u, data, mode) -> None:
        tree_id, tree = self.choose_tree(pick)
        parent_id = self.choose_message(tree, msg)
        parent = tree.messages.get(parent_id) if tree else None
        ids = (
            []
            if parent is None
            else (
                list(parent.children) if mode == "all" else [c.id for c in rankable(tree, parent)]
            )
        )
        order = data.draw(st.permutations(ids))
        order = {"drop": order[1:], "twice": order + order[:1], "ghost": order + [GHOST]}.get(
            mode, order
        )
        self.ranking(tree_id, parent_id, u, order)

    @rule(
        pick=ix,
        msg=ix,
        u=users,
        op=st.sampled_from(["toggle", "toggle", "add", "remove", "flip", "pile-on"]),
        emoji=st.sampled_from(
            ["red_flag", "red_flag", "+1", "-1", "heart_eyes", SKIP_REPLY, "??", "skip", "skip"]
        ),
    )
    def react(self, pick, msg, u, emoji, op) -> None:
        """Toggle an emoji; "skip": skip a reply task about the message; "pile-on": three users
        add the emoji one after the other (enough red flags for auto-moderation)."""
        tree_id, tree = self.choose_tree(pick)
        message_id = self.choose_message(tree, msg)
        for k in range(3 if op == "pile-on" else 1):
            actor = self.actor((u + k) % N_USERS)
            if emoji == "skip":
                self.skip_reply(tree_id, self.tree(tree_id), message_id, actor)
            else:
                self.toggle(tree_id, message_id, actor, emoji, "add" if op == "pile-on" else op)

    def toggle(self, tree_id: UUID, message_id: UUID, actor: Actor, emoji: str, op: str) -> None:
        tree = self.tree(tree_id)
        errors = self.missing(tree, message_id)
        if not errors and (emoji not in USER_EMOJIS or op not in ("toggle", "add", "remove")):
            errors = {E.EmojiOpUnsupportedError}
        expect: list = [(tree_id, None, {})]
        if not errors:
            m = tree.messages[message_id]
            has = actor.user_id in m.emojis.get(emoji, ())
            add = not has if op == "toggle" else op == "add"
            own_vote = add and emoji in ("+1", "-1") and m.user_id == actor.user_id
            if add != has and not own_vote:
                first = {"emoji": emoji, "added": add}
                opposite = {"+1": "-1", "-1": "+1"}.get(emoji)
                if add and opposite and actor.user_id in m.emojis.get(opposite, ()):
                    first = {"emoji": opposite, "added": False}
                expect = [(tree_id, Tree.EmojiToggled, {"message_id": message_id, **first})]
        self.send(
            "toggle_emoji",
            lambda: self.app.toggle_emoji(
                tree_id=tree_id, message_id=message_id, emoji=emoji, actor=actor, op=op
            ),
            errors,
            expect,
        )

    def skip_reply(self, tree_id: UUID, tree: Tree | None, message_id: UUID, actor: Actor) -> None:
        pending = sum(t.open for t in self.app.get_user(actor.user_id).tasks.values())
        if pending >= CONFIG.max_pending_tasks_per_user:
            return  # skipping needs an open task; the pending limit is User's business
        task = self.app.issue_task(
            user_id=actor.user_id,
            task_type="assistant_reply",
            tree_id=tree_id,
            message_id=message_id,
        )
        errors = self.missing(tree, message_id)
        skipped = not errors and actor.user_id in tree.messages[message_id].emojis.get(
            SKIP_REPLY, ()
        )
        expect = [(tree_id, None if skipped else Tree.EmojiToggled, {"emoji": SKIP_REPLY})]
        self.send(
            "skip_reply",
            lambda: self.app.nack_task(user_id=actor.user_id, task_id=task.id),
            errors,
            expect,
        )

    @rule(pick=ix, action=st.sampled_from(["activate", "halt", "resume", "retry_scoring"]))
    def moderate_tree(self, pick: int, action: str) -> None:
        tree_id, tree = self.choose_tree(pick)
        if action == "activate":
            return self.activate(tree_id)
        state = tree.state if tree is not None else None
        allowed = {
            "halt": state in HALTABLE_STATES,
            "resume": state is S.HALTED_BY_MODERATOR,
            "retry_scoring": state is S.SCORING_FAILED,
        }[action]
        errors = {E.TreeNotFoundError} if tree is None else set()
        if tree is not None and not allowed:
            errors = {E.InvalidStateTransitionError}
        if action == "resume" and tree is not None and tree.root.deleted:
            errors.add(E.MessageDeletedError)
        cls = {"halt": Tree.TreeHalted, "resume": Tree.TreeResumed}.get(action)
        command = {
            "halt": lambda: self.app.halt_tree(tree_id=tree_id, actor=MODERATOR),
            "resume": lambda: self.app.resume_tree(tree_id=tree_id, actor=MODERATOR),
            "retry_scoring": lambda: self.app.retry_scoring(tree_id=tree_id),
        }[action]
        self.send(action, command, errors, [(tree_id, cls, {"from_state": state})] if cls else None)

    @rule(pick=ix, msg=ix, text=texts, action=st.sampled_from(["delete", "undelete", "edit"]))
    def moderate_message(self, pick: int, msg: int, text: str, action: str) -> None:
        tree_id, tree = self.choose_tree(pick)
        message_id = self.choose_message(tree, msg)
        # Mostly delete replies (a deleted root stops the tree) and restore removed replies
        # (the top of a deleted subtree, whose parent may have taken new replies since).
        wanted = {
            "delete": lambda m: m.parent_id and not m.deleted,
            "undelete": lambda m: (
                m.deleted and m.parent_id and not tree.messages[m.parent_id].deleted
            ),
        }.get(action)
        targets = [m.id for m in tree.messages.values() if wanted(m)] if tree and wanted else []
        if wanted and msg % 4:
            message_id = targets[msg % len(targets)] if targets else GHOST
        self.moderate(tree_id, message_id, action, text)

    def moderate(self, tree_id: UUID, message_id: UUID, action: str, text: str = "") -> None:
        tree = self.tree(tree_id)
        errors, expect = self.missing(tree, message_id), [(tree_id, None, {})]
        if not errors and action == "delete":
            stack, ids = [message_id], set()
            while stack:
                m = tree.messages[stack.pop()]
                ids |= set() if m.deleted else {m.id}
                stack.extend(m.children)
            if ids:
                expect = [(tree_id, Tree.MessageDeleted, {"message_ids": ids})]
        elif not errors and action == "undelete":
            ids, m = set(), tree.messages[message_id]
            while m is not None:
                if m.deleted:  # revived: it must fit under its parent's reply limit again
                    ids.add(m.id)
                    parent = tree.messages.get(m.parent_id)
                    if (
                        parent
                        and m.review_result is not False
                        and len(self.active(tree, parent)) >= self.limit(tree, parent)
                    ):
                        errors.add(E.MaxChildrenExceededError)
                m = tree.messages.get(m.parent_id)
            if ids:
                expect = [(tree_id, Tree.MessageUndeleted, {"message_ids": ids})]
        elif not errors:
            m = tree.messages[message_id]
            errors = {E.MessageDeletedError} if m.deleted else text_errors(text)
            expect = [(tree_id, Tree.MessageEdited, {"text": text, "revision": m.revision + 1})]
        command = {
            "delete": lambda: self.app.delete_message(
                tree_id=tree_id, message_id=message_id, actor=MODERATOR
            ),
            "undelete": lambda: self.app.undelete_message(
                tree_id=tree_id, message_id=message_id, actor=MODERATOR
            ),
            "edit": lambda: self.app.edit_message(
                tree_id=tree_id, message_id=message_id, text=text, actor=MODERATOR
            ),
        }[action]
        self.send(action, command, errors, expect)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def shape_limits_and_roles(self) -> None:
        for tree, _ in self.views():
            for m in tree.messages.values():
                if m.parent_id is None:
                    assert m.id == tree.id and m.depth == 0 and m.role is Role.PROMPTER
                else:
                    parent = tree.messages[m.parent_id]
                    assert m.id in parent.children and m.depth == parent.depth + 1
                    assert m.depth <= tree.max_depth, m
                    assert m.role is not parent.role, m
                active = self.active(tree, m)
                assert len(active) <= self.limit(tree, m), f"{m} has {len(active)} active replies"

    @invariant()
    def replay_rebuilds_the_live_tree(self) -> None:
        for tree, events in self.views():
            assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
            assert tree.version == len(events)
            fresh = None
            for e in events:
                fresh = e.mutate(fresh)
            assert snapshot(fresh) == snapshot(tree)
            stored = self.app.repository.get(tree.id, version=tree.version)
            assert snapshot(stored) == snapshot(tree)

    @invariant()
    def state_moves_follow_the_allowed_edges(self) -> None:
        for tree, events in self.views():
            assert isinstance(events[0], Tree.TreeStarted)
            state = S(events[0].state)
            for e in events:
                if isinstance(e, Tree.StateChanged):
                    assert e.from_state == state, (e, state)
                    assert (state, S(e.to_state)) in ALLOWED_TRANSITIONS, e
                    assert isinstance(e, Tree.TreeHalted) == (e.to_state == S.HALTED_BY_MODERATOR)
                    assert not isinstance(e, Tree.TreeResumed) or state is S.HALTED_BY_MODERATOR
                    state = S(e.to_state)
            assert state is tree.state

    @invariant()
    def reviews_decide_exactly_at_the_required_count(self) -> None:
        for tree, events in self.views():
            reviewers: dict[UUID, list] = {}
            decided: set[UUID] = set()
            for e in events:
                if isinstance(e, Tree.LabelsSubmitted) and e.kind == "task":
                    required = (
                        CONFIG.num_reviews_initial_prompt
                        if e.message_id == tree.id
                        else CONFIG.num_reviews_reply
                    )
                    seen = reviewers.setdefault(e.message_id, [])
                    assert e.user_id not in seen, f"{e.user_id} reviewed {e.message_id} twice"
                    seen.append(e.user_id)
                    assert len(seen) <= required and e.message_id not in decided
                elif isinstance(e, Tree.ReviewDecided):
                    required = (
                        CONFIG.num_reviews_initial_prompt
                        if e.message_id == tree.id
                        else CONFIG.num_reviews_reply
                    )
                    assert e.message_id not in decided
                    assert len(reviewers.get(e.message_id, ())) == required == e.review_count
                    decided.add(e.message_id)
            for m in tree.messages.values():
                assert m.review_count == len(reviewers.get(m.id, ()))
                assert (m.review_result is not None) == (m.id in decided)

    @invariant()
    def rankings_are_bounded_and_scored_by_consensus(self) -> None:
        for tree, events in self.views():
            rankings: dict[UUID, list] = {}
            scored: dict[str, list] | None = None
            for e in events:
                if isinstance(e, Tree.RankingSubmitted):
                    done = rankings.setdefault(e.parent_id, [])
                    assert all(user != e.user_id for user, _ in done), "ranked twice"
                    done.append((e.user_id, list(e.ranked_message_ids)))
                    assert len(done) <= CONFIG.num_required_rankings
                elif isinstance(e, Tree.TreeScored):
                    scored = e.ranks
                    for parent_id, order in e.ranks.items():
                        ballots = [ids for _, ids in rankings[UUID(parent_id)]]
                        assert len(ballots) == CONFIG.num_required_rankings
                        assert order == consensus(ballots)
            if tree.state is S.READY_FOR_EXPORT:
                assert scored is not None
                ranked = {m.id: m.rank for m in tree.messages.values() if m.rank is not None}
                expected = {c: k for order in scored.values() for k, c in enumerate(order)}
                assert ranked == expected

    @invariant()
    def growth_and_ranking_end_when_they_should(self) -> None:
        for tree, _ in self.views():
            messages = tree.messages.values()
            size = sum(live(tree, m) for m in messages)
            awaiting = sum(m.review_result is None and not m.deleted for m in messages)
            if tree.state in WORKING_STATES:  # deleting the root halts a tree
                assert not tree.root.deleted, f"{tree.state.value} tree {tree.id} has no root"
            if tree.state is S.GROWING:
                assert size > 0
                assert not (size >= tree.goal_tree_size and awaiting == 0), (
                    f"growing tree {tree.id} is complete: size {size}, awaiting {awaiting}"
                )
            if tree.state is S.RANKING:
                parents = [m for m in messages if not m.deleted and len(rankable(tree, m)) > 1]
                assert any(len(p.rankings) < CONFIG.num_required_rankings for p in parents), (
                    f"ranking tree {tree.id} has nothing left to rank"
                )

    def teardown(self) -> None:
        for tree, _ in self.views():
            event(f"final state: {tree.state.value}")


TreeMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestTreeStateful = TreeMachine.TestCase
