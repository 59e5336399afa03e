"""Which dataset rows came from people's votes on model-written candidates, and whose.

A build's files do not say which reply a model wrote (TRL's columns have no room for it),
so the flywheel asks here: the same trees at the same log position, cut with the same
options, and every row that holds a model-written reply is counted, per kind and per model
(a model-vs-model pair counts once in the total and once for each of its two models; a
reply with no model name counts as "synthetic"). SFT rows are counted when their path
holds a model-written message.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from projections.datasets.rows import BuildOptions, TreeRows

UNNAMED = "synthetic"
COUNTED = ("pairs", "kto", "sft")


def _models(rows: TreeRows, turns: Iterable[dict[str, str]]) -> set[str]:
    found = set()
    for turn in turns:
        m = rows.source(turn)
        if m.synthetic:
            found.add(getattr(m, "model_name", None) or UNNAMED)
    return found


def count_tree(rows: TreeRows, totals: dict[str, Any]) -> None:
    """Add one tree's rows that hold model-written replies to ``totals``."""
    per_model = totals["models"]
    kinds = set(rows.options.kinds)
    found: list[tuple[str, set[str]]] = []
    if kinds & {"rm", "dpo"}:
        found += [("pairs", _models(rows, r["chosen"] + r["rejected"])) for r in rows.pairs()]
    if "kto" in kinds:
        found += [("kto", _models(rows, r["completion"])) for r in rows.kto()]
    if "sft" in kinds:
        found += [("sft", _models(rows, r["messages"])) for r in rows.sft()]
    for kind, models in found:
        if not models:
            continue
        totals[kind] += 1
        for model in models:
            counts = per_model.setdefault(model, dict.fromkeys(COUNTED, 0))
            counts[kind] += 1


def vote_rows(trees: Iterable[Any], options: BuildOptions) -> dict[str, Any]:
    """Per kind (pairs: the rm and dpo rows) how many rows hold a model-written reply, and
    the same per model. ``trees``: ready trees as the builder replays them."""
    totals: dict[str, Any] = {**dict.fromkeys(COUNTED, 0), "models": {}}
    for tree in trees:
        if options.lang is not None and tree.root.lang != options.lang:
            continue
        count_tree(TreeRows(tree, options), totals)
    totals["models"] = dict(sorted(totals["models"].items()))
    return totals


def vote_rows_at(folder: Path, position: int, options: BuildOptions) -> dict[str, Any]:
    """``vote_rows`` for the ready trees of the store in ``folder`` as of ``position``."""
    from projections import log_reader
    from projections.datasets.build import replay_trees

    db = log_reader.events_db(folder)
    return vote_rows(replay_trees(db, position, options.lang), options)
