"""Flywheel-effect benchmark (CPU, tiny models, minutes): does voting make the next model better?

A simulated crowd with a hidden preference (the shorter reply is better) works through OA's
HTTP task protocol (the commands a front end sends for people: request, ack, interaction):
it reviews and ranks 4 candidates per prompt, pre-labelled by the current policy side by side
with the turn-0 model (turn 0 alone in round 0). A flywheel turn (datasets -> sft -> rm ->
rlhf -> register -> report) then trains the next policy on every vote so far. Per turn:

- the flywheel report's RM pairwise accuracy on its validation pairs (split by tree, at
  least 200 pairs: 70 prompts x 6 pairs per ranking of 4 give 420 pairs in round 0);
- the RM on the next round's fresh candidates nobody voted on yet (every pair of one prompt's
  candidates whose lengths differ, the shorter chosen);
- the report's mean reward of the new policy vs the previous one on held-out prompts;
- the fraction of the policy's candidates with the preferred property (shorter than the
  median turn-0 candidate of round 0), turn 0's fraction in the same round, mean length;
- the policy's Bradley-Terry strength vs turn 0 with its 95% interval and votes.

    python -m bench.flywheel [--turns 3] [--prompts 70] [--max-steps 16] [--rm-steps 150]
        [--lr 1e-3] [--rlhf-lr 1e-4] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from itertools import combinations
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

CANDIDATES = 4  # per prompt: one ranking of 4 gives 6 preference pairs
CONFIG = TreeConfig(
    goal_tree_size=1 + CANDIDATES,
    min_goal_tree_size=1,
    max_children_count=CANDIDATES,
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
    """Pre-label every slot (CANDIDATES per prompt, dealt round-robin over the models);
    returns (tree id, prompt text, model name, text) of every candidate."""
    app = open_app(folder, CONFIG)
    try:
        n = CANDIDATES // len(models)
        prelabel_models(
            app, targets, models, PrelabelOptions(n=n, max_new_tokens=tokens, seed=len(targets))
        )
        found = []
        for t in targets:
            tree = app.get_tree(t.tree_id)
            prompt = tree.messages[t.parent_id].text
            found += [(t.tree_id, prompt, m.model_name, m.text) for m in tree.messages.values()]
        return [f for f in found if f[2]]
    finally:
        app.close()


async def vote(folder: Path, rounds: int, prompts: int, seed: int) -> int:
    """The crowd works through OA's HTTP task protocol (request, ack, interaction) until
    every prompt so far is ready for export: reviews, then rankings, shorter first."""
    trees = rounds * prompts
    app = create_app(
        folder, CONFIG, root_tokens=frozenset({ROOT}), seed=seed, rate_limits=RateLimits(False)
    )
    async with in_process(app) as client:
        crowd = ShortFirst(client, await new_client_key(client), users=6, trees=trees, seed=seed)
        await crowd.run(max_cycles=40 * prompts)
        return crowd.cycles


def held_out_accuracy(rm: Path, found: list) -> dict[str, Any]:
    """The reward model on pairs of fresh candidates nobody voted on (next round's), the
    shorter one chosen: every pair of one prompt's candidates whose lengths differ."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.reward import pairwise_accuracy

    by_tree: dict[Any, tuple[str, list[str]]] = {}
    for tree, prompt, _, text in found:
        by_tree.setdefault(tree, (prompt, []))[1].append(text)
    pairs = [
        {
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": min(a, b, key=len)}],
            "rejected": [{"role": "assistant", "content": max(a, b, key=len)}],
        }
        for prompt, texts in by_tree.values()
        for a, b in combinations(texts, 2)
        if len(a) != len(b)
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


def train_turn(folder: Path, out: Path, base: str, args: argparse.Namespace) -> dict[str, Any]:
    """One flywheel turn on every vote so far: datasets, sft, rm, rlhf, register, report."""
    plan = FlywheelPlan(
        store=folder,
        out=out,
        base_model=base,
        name=out.name,
        # A tiny random model learns nothing at the trainers' defaults for real models
        # (1e-5): the learning rates are raised; the rm drops the rank-gap margin (a gap of
        # 3 between the shortest and longest of 4 candidates only adds loss it cannot meet).
        options={
            "sft": {"max_steps": args.max_steps, "learning_rate": args.lr},
            "rm": {"max_steps": args.rm_steps, "learning_rate": args.lr, "margin_scale": 0.0},
            "rlhf": {
                "max_steps": args.max_steps,
                "learning_rate": args.rlhf_lr,
                "num_generations": 4,
                "max_completion_length": args.max_new_tokens,
            },
        },
        prelabel_max_new_tokens=args.max_new_tokens,
    )
    return Flywheel(plan, report=lambda _: None, progress=False).run()["steps"]


def measure_round(folder: Path, root: Path, turn: int, policy: str, args: Any) -> dict[str, Any]:
    """New prompts, the policy's (and turn 0's) candidates, the crowd's votes over HTTP."""
    targets = add_prompts(folder, turn * args.prompts, args.prompts)
    models = [policy] if policy == "turn0" else [policy, "turn0"]
    found = candidates(folder, targets, models, args.max_new_tokens)
    mine = [text for _, _, model, text in found if model == policy]
    turn0 = [text for _, _, model, text in found if model == "turn0"]
    held_out = held_out_accuracy(root / f"turn{turn}" / "rm", found) if turn else None
    cycles = asyncio.run(vote(folder, turn + 1, args.prompts, seed=turn))
    print(f"round {turn}: {policy} wrote {len(mine)} candidates, {cycles} HTTP task cycles")
    return {"turn": turn, "policy": policy, "mine": mine, "turn0": turn0, "held_out": held_out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=70, help="new prompts per round")
    parser.add_argument("--max-steps", type=int, default=16, help="sft and rlhf steps")
    parser.add_argument("--rm-steps", type=int, default=150)
    parser.add_argument("--lr", type=float, default=1e-3, help="sft and rm learning rate")
    parser.add_argument("--rlhf-lr", type=float, default=1e-4)
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
    began, policy, rounds, turns = time.perf_counter(), "turn0", [], {}
    for turn in range(args.turns + 1):  # the last round only measures the last policy
        rounds.append(measure_round(folder, root, turn, policy, args))
        if turn < args.turns:
            turns[turn + 1] = train_turn(folder, root / f"turn{turn + 1}", policy, args)
            policy = f"turn{turn + 1}-rlhf"
    print(f"\n{args.turns} turns in {time.perf_counter() - began:.0f} s; data in {root}")
    print_table(rounds, turns, strengths(folder))


def _interval(p: dict[str, Any] | None) -> str:
    if not p:
        return "-"
    return f"{p['strength']:+.2f} [{p['interval'][0]:+.2f}, {p['interval'][1]:+.2f}]"


def _acc(a: dict[str, Any] | None) -> str:
    return f"{a['value']:.3f} ({a['pairs']})" if a and a.get("value") is not None else "-"


def print_table(rounds: list[dict], turns: dict[int, dict], final: dict[str, Any]) -> None:
    cutoff = statistics.median(len(t) for t in rounds[0]["mine"])
    print(f"preferred property: shorter than {cutoff:.0f} characters (median turn-0 candidate)")
    header = (
        "turn | policy | RM val acc (pairs) | RM fresh-candidate acc (pairs) | "
        "held-out reward new vs prev | short share policy (n) | short share turn0 | "
        "mean chars | BT vs turn0 [95%] (votes)"
    )
    print(header)
    for r in rounds:
        report = turns.get(r["turn"], {}).get("report", {})
        rm = report.get("rm_validation")
        rm_text = f"{rm['accuracy']:.3f} ({rm['pairs']})" if rm and rm["accuracy"] else "-"
        reward = report.get("held_out_reward", {})
        gain = (
            f"{reward['policy']['mean']:+.3f} vs {reward['previous']['mean']:+.3f}"
            if reward.get("gain") is not None
            else "-"
        )
        share = sum(len(t) < cutoff for t in r["mine"]) / max(1, len(r["mine"]))
        base = sum(len(t) < cutoff for t in r["turn0"]) / max(1, len(r["turn0"]))
        chars = statistics.mean(len(t) for t in r["mine"]) if r["mine"] else 0.0
        p = final.get(r["policy"])
        votes = f" ({p['votes']})" if p else ""
        print(
            f"{r['turn']} | {r['policy']} | {rm_text} | {_acc(r['held_out'])} | {gain} | "
            f"{share:.2f} ({len(r['mine'])}) | {base:.2f} | {chars:.1f} | {_interval(p)}{votes}"
        )


if __name__ == "__main__":
    main()
