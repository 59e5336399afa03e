"""Pre-labelling: a model writes candidate assistant replies that people then review and rank.

Targets (prompter messages that can take an assistant reply now) come from the caller,
usually the read model's extendible parents; each is checked again against its tree
aggregate, which is the authority: a parent that filled up in the meantime, or a tree
that reached its goal size, gets only as many replies as still fit, and the rest is
counted as refused with the reason. Replies go through ``DataEngine.add_reply`` like a
person's, marked ``synthetic`` with ``model_name``, so review, limits and ranking apply.

Idempotent: candidate ``k`` for a parent has the frontend message id
``prelabel:<model>:<parent>:<k>``, so its message id is fixed; slots already filled by an
earlier run are neither generated nor submitted again. Each slot has its own model user
(``<model>#<k>``) because a tree takes one reply per user per parent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.model.actor import Actor
from domain.model.api_client import client_id_for_key
from domain.model.errors import DomainError
from domain.model.message import Role
from domain.model.states import TreeState
from domain.model.tree import ConversationTree
from domain.model.tree_rules import active_children, reply_limit
from domain.service.application import DataEngine, message_id_for
from training.generated_text import clean_text
from training.prelabel_vision import TEXT_MODEL_SKIP, VisionGenerator, job_chat
from training.registry import ResolvedModel, resolve
from training.tiny_vlm import is_vision_model as _vision

# The internal client the model users belong to. Its key is public (it is in this file), so
# the client is disabled as soon as it is registered: the key can never authenticate.
PRELABEL_CLIENT_KEY = "dataengine-internal-prelabel-client"


@dataclass(frozen=True, slots=True)
class Target:
    tree_id: UUID
    parent_id: UUID


@dataclass(frozen=True, slots=True)
class PrelabelOptions:
    n: int = 4
    max_new_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (sampling), not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")


@dataclass
class PrelabelSummary:
    model_name: str
    path: str
    device: str = ""
    prompts_seen: int = 0
    generated: int = 0  # candidates sampled
    added: int = 0  # replies recorded
    already_present: int = 0  # slots filled by an earlier run
    refused: Counter = field(default_factory=Counter)  # tree limits and command refusals
    skipped: Counter = field(default_factory=Counter)  # empty or duplicate candidates
    new_tokens: int = 0
    generation_seconds: float = 0.0
    added_ids: list[UUID] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float | None:
        return self.new_tokens / self.generation_seconds if self.generation_seconds else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "path": self.path,
            "device": self.device,
            "prompts_seen": self.prompts_seen,
            "generated": self.generated,
            "added": self.added,
            "already_present": self.already_present,
            "refused": dict(self.refused),
            "skipped": dict(self.skipped),
            "new_tokens": self.new_tokens,
            "tokens_per_second": self.tokens_per_second,
        }


# ---------------------------------------------------------------- what fits where
def grow_size(tree: ConversationTree) -> int:
    """OA's growth count: the accepted root plus replies accepted or still under review."""
    return sum(
        1
        for m in tree.messages.values()
        if not m.deleted
        and (m.review_result is True or (m.review_result is None and m.parent_id is not None))
    )


def frontend_id(model_name: str, parent_id: UUID, k: int) -> str:
    return f"prelabel:{model_name}:{parent_id}:{k}"


def room(tree: ConversationTree, parent_id: UUID, config: Any) -> tuple[int, str]:
    """How many more assistant replies the parent takes now, and what limits it."""
    parent = tree.messages.get(parent_id)
    if (
        tree.state is not TreeState.GROWING
        or parent is None
        or parent.deleted
        or parent.review_result is not True
        or parent.role is not Role.PROMPTER
        or parent.depth >= tree.max_depth
    ):
        return 0, "not_extendible"
    children = reply_limit(tree, parent, config) - len(active_children(tree, parent))
    size = tree.goal_tree_size - grow_size(tree)
    if children <= size:
        return max(0, children), "max_children"
    return max(0, size), "tree_full"


# ---------------------------------------------------------------- sampling
class Generator:
    """A causal LM and its tokenizer, sampling several continuations per chat in batches.

    Decoder-only batches are padded on the left so every prompt ends where generation
    starts; only the new tokens are decoded. GPU (bf16) when there is one, else CPU.
    """

    def __init__(self, path: str, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        cuda = self.device.startswith("cuda")
        dtype = (
            torch.bfloat16
            if cuda and torch.cuda.is_bf16_supported()
            else (torch.float16 if cuda else torch.float32)
        )
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        self.tokenizer.truncation_side = "left"  # keep the end of a long conversation
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # transformers types from_pretrained().to() too narrowly for a str device
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        self.model = model.to(self.device)
        self.model.eval()
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)

    def render(self, chat: list[dict[str, str]]) -> str:
        if self.tokenizer.chat_template:
            return str(
                self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            )
        # A base model without a template: a plain transcript ending where the reply starts.
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in chat]
        return "\n".join(lines + ["Assistant:"])

    def sample(
        self, chats: list[list[dict[str, str]]], n: int, options: PrelabelOptions
    ) -> tuple[list[list[str]], int]:
        """``n`` texts per chat (stripped, may be empty) and the number of new tokens."""
        import torch

        max_new = options.max_new_tokens
        max_input = None
        if self.max_positions:
            max_new = min(max_new, self.max_positions // 2)
            max_input = self.max_positions - max_new
        batch = self.tokenizer(
            [self.render(c) for c in chats],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
            truncation=max_input is not None,
            max_length=max_input,
        )
        batch = batch.to(self.device)
        with torch.inference_mode():
            out = self.model.generate(
                **batch,
                do_sample=True,
                temperature=options.temperature,
                top_p=options.top_p,
                max_new_tokens=max_new,
                num_return_sequences=n,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        tokens = int((new != self.tokenizer.pad_token_id).sum())
        texts = [clean_text(t) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return [texts[i * n : (i + 1) * n] for i in range(len(chats))], tokens


# ---------------------------------------------------------------- the run
class _Submitter:
    """The model's actors (one user per candidate slot) and the reply command."""

    def __init__(self, app: DataEngine, model_name: str):
        self.app = app
        self.model_name = model_name
        self.client_id = client_id_for_key(PRELABEL_CLIENT_KEY)
        self._actors: dict[int, Actor] = {}

    def actor(self, k: int) -> Actor:
        """Registered on first use, so a run that adds nothing writes nothing."""
        if not self._actors:
            self.app.register_client(
                name="prelabel",
                api_key=PRELABEL_CLIENT_KEY,
                description="model replies (pre-labelling)",
            )
            self.app.change_client_access(self.client_id, enabled=False)
        if k not in self._actors:
            user_id = self.app.ensure_user(
                client_id=self.client_id,
                auth_method="model",
                username=f"{self.model_name}#{k}",
                display_name=self.model_name,
                show_on_leaderboard=False,
            )
            self._actors[k] = Actor(user_id, self.client_id)
        return self._actors[k]

    def message_id(self, parent_id: UUID, k: int) -> UUID:
        return message_id_for(self.client_id, frontend_id(self.model_name, parent_id, k))


@dataclass
class _Job:
    target: Target
    chat: list[dict[str, str]]
    slots: list[int]  # candidate slots to fill


def _plan(
    app: DataEngine,
    submit: _Submitter,
    target: Target,
    n: int,
    summary: PrelabelSummary,
    vision: bool = False,
) -> _Job | None:
    try:
        tree = app.get_tree(target.tree_id)
    except DomainError as e:
        summary.refused[e.error_code.name.lower()] += n
        return None
    missing = [k for k in range(n) if submit.message_id(target.parent_id, k) not in tree.messages]
    summary.already_present += n - len(missing)
    fit, reason = room(tree, target.parent_id, app.config)
    if len(missing) > fit:
        summary.refused[reason] += len(missing) - fit
    if not missing[:fit]:
        return None
    chat = job_chat(tree, target.parent_id, vision)  # None: images a text model cannot see
    if chat is None:
        summary.skipped[TEXT_MODEL_SKIP] += len(missing[:fit])
        return None
    return _Job(target, chat, missing[:fit])


def _pick(candidates: list[str], slots: int, summary: PrelabelSummary) -> list[str]:
    """Up to ``slots`` distinct non-empty texts; a slot left short stays open for a later run.
    (A batch samples as many candidates as its neediest prompt, so spares can stand in.)"""
    texts = [t for t in candidates if t]
    picked = list(dict.fromkeys(texts))[:slots]
    short = slots - len(picked)
    empty = min(short, len(candidates) - len(texts))
    if empty:
        summary.skipped["empty"] += empty
    if short - empty:
        summary.skipped["duplicate"] += short - empty
    return picked


def _submit(
    app: DataEngine, submit: _Submitter, job: _Job, texts: list[str], summary: PrelabelSummary
) -> None:
    tree = app.get_tree(job.target.tree_id)  # the authority, as of now
    parent = tree.messages[job.target.parent_id]
    seen = {tree.messages[c].text.strip() for c in parent.children}
    fit, reason = room(tree, job.target.parent_id, app.config)
    for k, text in zip(job.slots, texts):
        if text in seen:
            summary.skipped["duplicate"] += 1
            continue
        if fit <= 0:
            summary.refused[reason] += 1
            continue
        try:
            outcome = app.add_reply(
                actor=submit.actor(k),
                tree_id=job.target.tree_id,
                parent_id=job.target.parent_id,
                text=text,
                role=Role.ASSISTANT,
                frontend_message_id=frontend_id(submit.model_name, job.target.parent_id, k),
                synthetic=True,
                model_name=submit.model_name,
            )
        except DomainError as e:  # the command path has the last word on the limits
            summary.refused[e.error_code.name.lower()] += 1
            continue
        seen.add(text)
        fit -= 1
        if outcome.recorded:
            summary.added += 1
            summary.added_ids.append(outcome.id)


def prelabel(
    app: DataEngine,
    targets: Iterable[Target],
    model: str | ResolvedModel,
    options: PrelabelOptions = PrelabelOptions(),
    *,
    generator: Generator | VisionGenerator | None = None,
    progress: Callable[[int], Any] | None = None,
    caps: Mapping[Target, int] | None = None,
    blobs: Any = None,
) -> PrelabelSummary:
    """Sample ``options.n`` candidates per target (``caps[target]`` where given: several
    models share a prompt's room, training.prelabel_models) and submit those that fit.
    An image-text-to-text model sees the prompts' images (read from ``blobs``, the blob
    store); a text-only model skips prompts with images (training.prelabel_vision)."""
    resolved = model if isinstance(model, ResolvedModel) else resolve(app, model)
    summary = PrelabelSummary(resolved.model_name, resolved.path)
    submit = _Submitter(app, resolved.model_name)
    targets = list(targets)
    seeded = False
    vision = _vision(resolved.path) if generator is None else hasattr(generator, "processor")
    for start in range(0, len(targets), options.batch_size):
        chunk = targets[start : start + options.batch_size]
        summary.prompts_seen += len(chunk)
        wanted = [(t, options.n if caps is None else caps.get(t, 0)) for t in chunk]
        jobs = [j for j in (_plan(app, submit, t, n, summary, vision) for t, n in wanted) if j]
        if jobs:
            if generator is None:  # loaded only once there is something to write
                generator = (
                    VisionGenerator(resolved.path, blobs) if vision else Generator(resolved.path)
                )
            if not seeded:
                from transformers import set_seed

                set_seed(options.seed)
                seeded = True
            summary.device = generator.device
            width = max(len(j.slots) for j in jobs)
            began = time.perf_counter()
            texts, tokens = generator.sample([j.chat for j in jobs], width, options)
            summary.generation_seconds += time.perf_counter() - began
            summary.new_tokens += tokens
            for job, candidates in zip(jobs, texts):
                summary.generated += len(candidates)
                _submit(app, submit, job, _pick(candidates, len(job.slots), summary), summary)
        if progress is not None:
            progress(len(chunk))
    return summary


def find_targets(conn: Any, config: Any, lang: str | None, limit: int | None) -> list[Any]:
    """Prompter messages that can take an assistant reply now, in a stable order."""
    from projections.availability import extendible_parents

    langs = (
        [lang]
        if lang
        else [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT lang FROM trees WHERE state = 'growing' ORDER BY lang"
            )
        ]
    )
    now = datetime.now(UTC)
    targets = [
        Target(UUID(p.tree_id), UUID(p.message_id))
        for code in langs
        for p in extendible_parents(conn, config, code, None, now)
        if p.role == "prompter"
    ]
    return targets if limit is None else targets[:limit]
