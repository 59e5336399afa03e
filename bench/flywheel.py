"""Flywheel-effect benchmark (CPU, tiny models, minutes): does voting make the next model better?

A simulated crowd with a hidden preference (the shorter reply is better) votes through
OA's HTTP task protocol on candidates pre-labelled by the current policy side by side with
the turn-0 model; then a flywheel turn (datasets -> sft -> rm -> rlhf -> register) trains the
next policy from all votes so far. Per turn it prints the reward model's pairwise accuracy
on held-out pairs (candidates nobody voted on yet, ordered by the hidden preference), the
fraction of the policy's candidates with the preferred property (shorter than the median
turn-0 candidate), and the policy's Bradley-Terry strength vs turn 0 with its interval.

    python -m bench.flywheel [--turns 3] [--prompts 12] [--max-steps 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from api.bootstrap import caught_up_runner, open_app  # noqa: E402
from api.flywheel import Flywheel, FlywheelPlan  # noqa: E402
from api.http.app import create_app  # noqa: E402
from api.http.ratelimit import RateLimits  # noqa: E402
from domain.model.actor import Actor  # noqa: E402
from domain.model.config import TreeConfig  # noqa: E402
from projections.arena import arena_leaderboard  # noqa: E402
from tests.http_helpers import ROOT, Crowd, in_process, new_client_key  # noqa: E402
from training.prelabel import PrelabelOptions, Target  # noqa: E402
from training.prelabel_models import prelabel_models  # noqa: E402
from training.registry import register  # noqa: E402
from training.tiny import init_tiny  # noqa: E402

CONFIG = TreeConfig(
    goal_tree_size=3,
    min_goal_tree_size=1,
    max_children_count=2,
    num_required_rankings=2,
    num_reviews_initial_prompt=2,
    num_reviews_reply=2,
)
OK = {"spam": 0.0, "lang_mismatch": 0.0}
TOPICS = ("python", "rivers", "bread", "chess", "music", "stars", "trains", "tea", "maps", "bees")


class ShortFirst(Crowd):
    """People who rank the shorter reply first: a preference a small model can learn."""

    def answer(self, task: dict[str, Any], who: dict[str, str], frontend_id: str, n: int):
        body = super().answer(task, who, frontend_id, n)
        if task["type"].startswith("rank_"):
            replies = task["replies"]
            body["ranking"] = sorted(range(len(replies)), key=lambda i: (len(replies[i]), i))
        return body


def add_prompts(folder: Path, start: int, count: int) -> list[Target]:
    app = open_app(folder, CONFIG)
    try:
        client, _ = app.register_client(name="bench")
        people = [
            Actor(app.ensure_user(client_id=client, auth_method="local", username=f"b{i}"), client)
            for i in range(3)
        ]
        targets = []
        for i in range(start, start + count):
            text = f"Tell me about {TOPICS[i % len(TOPICS)]}, question {i}."
            tree = app.create_prompt(actor=people[0], text=text).id
            for p in people[1:]:
                app.submit_labels(actor=p, tree_id=tree, message_id=tree, labels=OK)
            app.activate_tree(tree_id=tree)
            targets.append(Target(tree, tree))
        return targets
    finally:
        app.close()


def candidates(folder: Path, targets: list[Target], models: list[str], tokens: int) -> list:
    """Pre-label; returns (tree id, model name, text) of every candidate."""
    app = open_app(folder, CONFIG)
    try:
        n = 2 if len(models) == 1 else 1
        prelabel_models(
            app, targets, models, PrelabelOptions(n=n, max_new_tokens=tokens, seed=len(targets))
        )
        return [
            (t.tree_id, m.model_name, m.text)
            for t in targets
            for m in app.get_tree(t.tree_id).messages.values()
            if m.synthetic
        ]
    finally:
        app.close()


async def vote(folder: Path, trees: int, seed: int) -> int:
    app = create_app(
        folder, CONFIG, root_tokens=frozenset({ROOT}), seed=seed, rate_limits=RateLimits(False)
    )
    async with in_process(app) as client:
        crowd = ShortFirst(client, await new_client_key(client), users=6, trees=trees, seed=seed)
        await crowd.run(max_cycles=40 * trees)
        return crowd.cycles


def held_out_accuracy(rm: Path, found: list) -> dict[str, Any]:
    """The reward model on pairs of candidates nobody voted on, ordered by the preference."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.reward import pairwise_accuracy

    by_tree: dict[Any, list[str]] = {}
    for tree, _, text in found:
        by_tree.setdefault(tree, []).append(text)
    pairs = [
        {
            "prompt": [{"role": "user", "content": "question"}],
            "chosen": [{"role": "assistant", "content": min(texts, key=len)}],
            "rejected": [{"role": "assistant", "content": max(texts, key=len)}],
        }
        for texts in by_tree.values()
        if len(texts) == 2 and len(texts[0]) != len(texts[1])
    ]
    model = AutoModelForSequenceClassification.from_pretrained(rm)
    return pairwise_accuracy(model, AutoTokenizer.from_pretrained(rm), pairs)


def strengths(folder: Path) -> dict[str, Any]:
    runner = caught_up_runner(str(folder))
    try:
        board = arena_leaderboard(runner.readmodel.reader(), rounds=200, anchor="turn0")
    finally:
        runner.close()
    return {p["player"]: p for p in board["players"]}


def train_turn(folder: Path, out: Path, base: str, max_steps: int) -> dict[str, Any]:
    plan = FlywheelPlan(
        store=folder,
        out=out,
        base_model=base,
        name=out.name,
        max_steps=max_steps,
        options={"rlhf": {"num_generations": 4, "max_completion_length": 24}},
    )
    return Flywheel(plan, report=lambda _: None, progress=False).run()["steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=12, help="new prompts per round")
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="flywheel-bench-"))
    folder = root / "data"
    folder.mkdir(parents=True, exist_ok=True)
    app = open_app(folder, CONFIG)
    base = init_tiny(root / "turn0", texts=[f"Tell me about {t}." for t in TOPICS], seed=0)
    register(app, name="turn0", path=base, kind="base")
    app.close()
    began, policy, cutoff, rows, total = time.perf_counter(), "turn0", None, [], 0
    for turn in range(args.turns + 1):  # the last round only measures the last policy
        targets = add_prompts(folder, turn * args.prompts, args.prompts)
        total += len(targets)
        models = [policy] if policy == "turn0" else [policy, "turn0"]
        found = candidates(folder, targets, models, args.max_new_tokens)
        if cutoff is None:
            cutoff = statistics.median(len(text) for _, _, text in found)
        mine = [text for _, model, text in found if model == policy]
        short = sum(len(t) < cutoff for t in mine) / max(1, len(mine))
        accuracy = held_out_accuracy(root / f"turn{turn}" / "rm", found) if turn else None
        cycles = asyncio.run(vote(folder, total, seed=turn))
        bt = strengths(folder).get(policy, {})
        rows.append((turn, policy, short, len(mine), accuracy, bt, cycles))
        print(f"round {turn}: {policy} wrote {len(mine)} candidates, {cycles} HTTP task cycles")
        if turn < args.turns:
            train_turn(folder, root / f"turn{turn + 1}", policy, args.max_steps)
            policy = f"turn{turn + 1}-rlhf"
    final = strengths(folder)
    print(f"\n{args.turns} turns in {time.perf_counter() - began:.0f} s; data in {root}")
    print(f"preferred property: shorter than {cutoff:.0f} characters (median turn-0 candidate)")
    header = ("turn", "policy", "RM held-out acc (pairs)", "short share (n)", "BT vs turn0 [95%]")
    print(" | ".join(header))
    for turn, name, share, n, acc, _, _ in rows:
        p = final.get(name, {})
        strength = (
            f"{p['strength']:+.2f} [{p['interval'][0]:+.2f}, {p['interval'][1]:+.2f}]" if p else "-"
        )
        acc_text = (
            f"{acc['value']:.2f} ({acc['pairs']})" if acc and acc["value"] is not None else "-"
        )
        print(f"{turn} | {name} | {acc_text} | {share:.2f} ({n}) | {strength}")
    if len(rows) > 1 and rows[0][2]:
        print(f"short share, last / first policy: {rows[-1][2] / rows[0][2]:.2f}x")


if __name__ == "__main__":
    main()
