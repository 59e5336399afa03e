"""Several models pre-label the same prompts, so people rank their replies side by side.

A prompt has room for only so many replies (the tree's children limit and goal size), so
the room is dealt out before anything is generated: one candidate per model in turn,
round after round, until every model has ``n`` or the room is gone. With room 3, two
models and n = 2 that is A, B, A: each model gets a reply under every prompt (when the room
allows), so every ranking of those replies compares the models. Each model then runs
training.prelabel on its share, one model loaded at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from domain.model.errors import DomainError
from domain.service.application import DataEngine
from training.prelabel import (
    Generator,
    PrelabelOptions,
    PrelabelSummary,
    Target,
    prelabel,
    room,
)
from training.registry import ResolvedModel, resolve


def deal(room_left: int, models: int, n: int) -> list[int]:
    """Candidates per model for one prompt: round-robin over the models, n rounds at most."""
    shares = [0] * models
    for _ in range(n):
        for i in range(models):
            if room_left <= 0:
                return shares
            shares[i] += 1
            room_left -= 1
    return shares


def shares(
    app: DataEngine, targets: Sequence[Target], models: int, n: int
) -> list[dict[Target, int]]:
    """Per model, how many candidates it writes for each target (room as of now)."""
    out: list[dict[Target, int]] = [{} for _ in range(models)]
    for target in targets:
        try:
            left, _ = room(app.get_tree(target.tree_id), target.parent_id, app.config)
        except DomainError:
            left = 0  # prelabel counts the refusal when it plans the target
        for i, share in enumerate(deal(left, models, n)):
            out[i][target] = share
    return out


def prelabel_models(
    app: DataEngine,
    targets: Sequence[Target],
    models: Sequence[str | ResolvedModel],
    options: PrelabelOptions | None = None,
    *,
    generators: Sequence[Generator | None] | None = None,
    progress: Callable[[int], Any] | None = None,
    blobs: Any = None,
) -> list[PrelabelSummary]:
    """Every model writes its share of ``options.n`` candidates per target; one summary per
    model. With one model this is training.prelabel.prelabel."""
    options = options or PrelabelOptions()
    resolved = [m if isinstance(m, ResolvedModel) else resolve(app, m) for m in models]
    names = [m.model_name for m in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"each model once, please: {', '.join(names)}")
    targets = list(targets)
    if len(resolved) == 1:
        caps: list[dict[Target, int] | None] = [None]
    else:
        caps = list(shares(app, targets, len(resolved), options.n))
    loaded = list(generators or [None] * len(resolved))
    return [
        prelabel(
            app, targets, model, options, generator=gen, progress=progress, caps=cap, blobs=blobs
        )
        for model, gen, cap in zip(resolved, loaded, caps)
    ]
