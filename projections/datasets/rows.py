"""Dataset rows from one conversation tree, in TRL's conversational formats.

Only accepted, non-deleted messages count (and no synthetic ones unless asked), as in
OA's training code; a message that does not count takes its subtree with it. A model-written
reply that people ranked is the exception: the ranking is a human judgement, so it takes part
in the preference pairs, the listwise file and KTO like a person's reply (model vs model,
model vs human), and with ``sft_model_replies`` the best path may end in it when it ranked
best. Prompts never run through model-written messages unless synthetic ones are kept. Messages
become ``{"role": "user"|"assistant", "content": text}``. Rows come out in a fixed order
(children in creation order), so the same tree always yields the same rows.

The tree may be a ConversationTree or the slim replay of one (projections.datasets.replay):
only ids, roles, texts, review results, deleted/synthetic flags, ranks and children are read.
``cut`` encodes a tree's rows of every kind as JSON lines: the build concatenates them into
its files and the training projection (projections.datasets.live) keeps them per tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import msgspec

from domain.model.message import Message, Role

KINDS = ("sft", "rm", "dpo", "kto", "rl")
SFT_PATHS = ("best", "top-k", "all")
# What cut() yields per tree: rm and dpo share the pairs, rm brings the listwise file.
ROW_KINDS = ("sft", "pairs", "rm_listwise", "kto", "rl")
SOURCE = {
    "sft": "sft",
    "rm": "pairs",
    "rm_listwise": "rm_listwise",
    "dpo": "pairs",
    "kto": "kto",
    "rl": "rl",
}  # output kind -> row kind, in output order

Chat = list[dict[str, str]]
# The source of a tree people wrote here (no origin); imported trees carry their source name.
LOCAL = "local"


@dataclass(frozen=True)
class BuildOptions:
    kinds: tuple[str, ...] = KINDS
    lang: str | None = None
    val_fraction: float = 0.05
    sft_paths: str = "best"
    top_k: int = 2
    include_synthetic: bool = False
    sft_model_replies: bool = False  # the best path may take a model reply ranked best
    # only trees from these sources (an imported tree's origin, or LOCAL); None: every tree
    sources: tuple[str, ...] | None = None

    @property
    def default_rows(self) -> bool:
        """Rows as the training projection cuts them (kinds, lang and split may differ)."""
        return (
            self.sft_paths == "best"
            and not self.include_synthetic
            and not self.sft_model_replies
            and self.sources is None  # the pre-cut rows keep no origin
        )

    def takes(self, origin: str | None) -> bool:
        """Whether a tree of this origin is in the build."""
        return self.sources is None or (origin or LOCAL) in self.sources

    def as_dict(self) -> dict[str, Any]:
        # sources only when asked for: a default build's manifest stays byte for byte as before
        chosen = {} if self.sources is None else {"sources": list(self.sources)}
        return {
            "kinds": list(self.kinds),
            "lang": self.lang,
            "val_fraction": self.val_fraction,
            "sft_paths": self.sft_paths,
            "top_k": self.top_k,
            "include_synthetic": self.include_synthetic,
            "sft_model_replies": self.sft_model_replies,
        } | chosen


def split_draw(tree_id: UUID) -> float:
    """The tree's place in [0, 1): it goes to validation when below the val fraction, so a
    tree's rows never straddle the split and it keeps its side in every later build."""
    return int.from_bytes(hashlib.sha256(tree_id.bytes).digest()[:8], "big") / 2**64


def _chat(m: Message) -> dict[str, str]:
    return {"role": "user" if m.role is Role.PROMPTER else "assistant", "content": m.text}


class RowSource(Protocol):
    """What the rows read of a tree: a ConversationTree, or the slim replay's RowTree
    (projections.datasets.replay), whose messages have the same attribute names."""

    @property
    def messages(self) -> Mapping[Any, Any]: ...

    @property
    def root(self) -> Any: ...


class TreeRows:
    """The rows of every kind that one tree yields."""

    def __init__(self, tree: RowSource, options: BuildOptions):
        self.tree = tree
        self.options = options
        self._children: dict[tuple[Message, bool, bool], list[Message]] = {}
        self._prompters: list[tuple[Message, Chat]] | None = None
        self._chats: dict[Message, dict[str, str]] = {}
        self._sources: dict[int, Message] = {}  # id(turn) -> its message

    def chat(self, m: Message) -> dict[str, str]:
        """The message as a chat turn; one dict per message, shared by the rows that hold it."""
        turn = self._chats.get(m)
        if turn is None:
            turn = self._chats[m] = _chat(m)
            self._sources[id(turn)] = m
        return turn

    def counts(self, m: Message) -> bool:
        return (
            m.review_result is True
            and not m.deleted
            and (self.options.include_synthetic or not m.synthetic)
        )

    def voted(self, m: Message) -> bool:
        """A model-written reply people accepted and ranked."""
        return (
            m.synthetic
            and m.rank is not None
            and m.role is Role.ASSISTANT
            and m.review_result is True
            and not m.deleted
        )

    def source(self, turn: dict[str, str]) -> Message:
        """The message a chat turn of this tree's rows was made from (turns are shared)."""
        return self._sources[id(turn)]

    def children(
        self, m: Message, *, ranked_first: bool = False, voted: bool = False
    ) -> list[Message]:
        """Counted children; with ``voted`` also the model-written replies people ranked."""
        key = (m, ranked_first, voted)
        kids = self._children.get(key)
        if kids is None:
            kids = [
                c
                for c in (self.tree.messages[i] for i in m.children)
                if self.counts(c) or (voted and self.voted(c))
            ]
            if ranked_first:
                kids.sort(key=lambda c: (c.rank is None, c.rank or 0))
            self._children[key] = kids
        return kids

    def prompters(self) -> list[tuple[Message, Chat]]:
        """Every counted prompter message with the conversation up to and including it
        (computed once: every kind but sft starts from these)."""
        if self._prompters is not None:
            return self._prompters
        self._prompters = found = list[tuple[Message, Chat]]()
        root = self.tree.root
        if not self.counts(root):
            return found
        stack: list[tuple[Message, Chat]] = [(root, [self.chat(root)])]
        while stack:
            m, path = stack.pop()
            if m.role is Role.PROMPTER:
                found.append((m, path))
            stack.extend((c, path + [self.chat(c)]) for c in reversed(self.children(m)))
        return found

    # ------------------------------------------------------------------ kinds
    def rl(self) -> Iterator[dict[str, Any]]:
        for _, path in self.prompters():
            yield {"prompt": path}

    def ranked(self, m: Message) -> list[Message]:
        return [
            c
            for c in self.children(m, ranked_first=True, voted=True)
            if c.role is Role.ASSISTANT and c.rank is not None
        ]

    def pairs(self) -> Iterator[dict[str, Any]]:
        """Every ordered pair of ranked sibling replies: the better one is chosen."""
        for m, path in self.prompters():
            ranked = self.ranked(m)
            for i, better in enumerate(ranked):
                for worse in ranked[i + 1 :]:
                    assert better.rank is not None and worse.rank is not None  # ranked() has ranks
                    yield {
                        "prompt": path,
                        "chosen": [self.chat(better)],
                        "rejected": [self.chat(worse)],
                        "margin": float(worse.rank - better.rank),
                    }

    def listwise(self) -> Iterator[dict[str, Any]]:
        for m, path in self.prompters():
            ranked = self.ranked(m)
            if len(ranked) > 1:
                yield {
                    "prompt": path,
                    "completions": [[self.chat(c)] for c in ranked],
                    "ranks": [c.rank for c in ranked],
                }

    def kto(self) -> Iterator[dict[str, Any]]:
        """Rejected replies are undesirable; of ranked siblings the better half is desirable;
        an accepted reply nobody ranked is desirable."""
        for m, path in self.prompters():
            ranked = self.ranked(m)
            place = {c.id: i for i, c in enumerate(ranked)}
            for reply in (self.tree.messages[i] for i in m.children):
                if reply.role is not Role.ASSISTANT or reply.deleted or reply.review_result is None:
                    continue
                if reply.synthetic and not self.options.include_synthetic and not self.voted(reply):
                    continue
                if reply.review_result is False:
                    label = False
                elif reply.id in place and len(ranked) > 1:
                    label = place[reply.id] < len(ranked) / 2
                else:
                    label = True
                yield {"prompt": path, "completion": [self.chat(reply)], "label": label}

    def sft(self) -> Iterator[dict[str, Any]]:
        if self.options.sft_paths == "best":
            best = self.best_thread()
            if best:
                yield {"messages": best}
            return
        k = self.options.top_k if self.options.sft_paths == "top-k" else None
        for thread in self.threads(k):
            yield {"messages": thread}

    def best_thread(self) -> Chat:
        """Root, then at each prompter its best-ranked reply, at each assistant the first
        prompter reply that was answered; ends at an assistant message."""
        root = self.tree.root
        if not self.counts(root):
            return []
        path, m = [self.chat(root)], root
        model_replies = self.options.sft_model_replies
        while True:
            kids = self.children(m, ranked_first=True, voted=model_replies)
            if m.role is Role.ASSISTANT:
                kids = [c for c in kids if self.children(c, voted=model_replies)]
            if not kids:
                break
            m = kids[0]
            path.append(self.chat(m))
        return path if len(path) > 1 else []  # a prompter is only entered when answered

    def threads(self, top_k: int | None) -> Iterator[Chat]:
        """Root-to-leaf threads ending at an assistant (a trailing prompter leaf dropped),
        each once; with top_k, only threads whose replies all rank below top_k."""
        root = self.tree.root
        if not self.counts(root):
            return

        def kept(m: Message) -> list[Message]:
            kids = self.children(m)
            if top_k is None:
                return kids
            return [c for c in kids if c.role is Role.PROMPTER or c.rank is None or c.rank < top_k]

        stack: list[tuple[Message, Chat]] = [(root, [self.chat(root)])]
        while stack:
            m, path = stack.pop()
            kids = kept(m)
            if m.role is Role.ASSISTANT and (not kids or any(not kept(c) for c in kids)):
                yield path
            stack.extend((c, path + [self.chat(c)]) for c in reversed(kids))


_encoder = msgspec.json.Encoder()


def cut(
    tree: RowSource, options: BuildOptions, kinds: tuple[str, ...] = ROW_KINDS
) -> dict[str, tuple[int, bytes]]:
    """The tree's rows of each row kind as (count, JSON lines); kinds without rows left out."""
    rows = TreeRows(tree, options)
    found = {}
    for kind in kinds:
        produced = list(rows.listwise() if kind == "rm_listwise" else getattr(rows, kind)())
        if produced:
            found[kind] = (len(produced), _encoder.encode_lines(produced))
    return found
