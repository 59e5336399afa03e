"""The flywheel turn's report: the figures held out from training, and report.png.

Three figures say whether the turn helped, each on data the turn did not train on:

- the reward model's pairwise accuracy on its validation pairs (split by tree; the flywheel
  asks for at least ``RM_VAL_MIN`` of them when the data has that many), with the pairs
  too long for the model counted, never silently dropped (metrics.json of the rm step);
- the new policy's mean reward vs the previous policy's (the turn's base model), both
  scored by this turn's reward model on the same held-out prompts: the prompts the RLHF
  step left in its validation split (training.validation cuts them the same way here), one
  sampled reply each at the same settings and seed;
- the Bradley-Terry strength of the new policy vs the previous one in the arena, relative
  to the previous policy when it played (people's replies otherwise). It only exists after
  people have ranked the new policy's candidates: ``flywheel --only report --force`` redraws
  the report later.

``report.png``: the leaderboard with its intervals, RM validation accuracy and held-out mean
rewards per registered turn, and this turn's rows from votes per model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from projections.arena import HUMAN

RM_VAL_MIN = 200  # validation pairs the rm step asks for (when the data has twice that)
PROMPTS_MAX = 64  # held-out prompts scored per policy
REPORT_PNG = "report.png"
BOARD_MAX = 12  # players drawn on the leaderboard panel


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def rm_validation(out: Path) -> dict[str, Any]:
    """The rm step's pairwise accuracy with where its pairs came from."""
    metrics = _read(out / "rm" / "metrics.json") or {}
    acc = metrics.get("pairwise_accuracy")
    acc = acc if isinstance(acc, dict) else {"value": acc}
    too_long = (metrics.get("too_long") or {}).get("validation") or {}
    return {
        "accuracy": acc.get("value"),
        "pairs": acc.get("pairs"),
        "split": acc.get("split"),
        "skipped_too_long": acc.get("skipped_too_long", too_long.get("dropped", 0)),
        "validation": metrics.get("validation"),
    }


def held_out_prompts(data: Path, options: dict[str, Any]) -> list[list[dict[str, str]]]:
    """The prompts the RLHF step held out (its validation split, cut the same way)."""
    from training import validation
    from training.config import own_options
    from training.data import load

    dataset = load(data, "rlhf")
    own = own_options("rlhf", options)
    validation.split(dataset, own["val_fraction"], own["val_min"])
    return [list(p) for p in dataset.validation["prompt"][:PROMPTS_MAX]]


def mean_reward(
    policy: str, reward_model: str, prompts: list[list[dict[str, str]]], tokens: int, seed: int
) -> dict[str, Any]:
    """One sampled reply per prompt from ``policy``, scored by ``reward_model``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.prelabel import Generator, PrelabelOptions
    from training.reward import score

    generator = Generator(policy)
    torch.manual_seed(seed)
    options = PrelabelOptions(n=1, max_new_tokens=tokens, seed=seed)
    replies: list[str] = []
    for start in range(0, len(prompts), 16):
        texts, _ = generator.sample(prompts[start : start + 16], 1, options)
        replies.extend(t[0] for t in texts)
    device = generator.device
    del generator  # one model in memory at a time
    rm = AutoModelForSequenceClassification.from_pretrained(reward_model).to(device)
    limit = getattr(rm.config, "max_position_embeddings", None)
    scores = score(
        rm,
        AutoTokenizer.from_pretrained(reward_model),
        [p + [{"role": "assistant", "content": r}] for p, r in zip(prompts, replies)],
        max_length=limit,
    )
    scored = [s for s in scores if s is not None]
    return {
        "mean": sum(scored) / len(scored) if scored else None,
        "scored": len(scored),
        "too_long": len(scores) - len(scored),
        "mean_chars": sum(map(len, replies)) / len(replies) if replies else None,
    }


def held_out_rewards(
    out: Path, previous: str, options: dict[str, Any], tokens: int, seed: int = 0
) -> dict[str, Any]:
    """Mean reward of the new policy and of the previous one on the held-out prompts."""
    prompts = held_out_prompts(out / "datasets", options)
    result: dict[str, Any] = {
        "prompts": len(prompts),
        "source": "the rlhf step's validation split",
        "reward_model": str(out / "rm"),
    }
    if not prompts:
        result["note"] = "no held-out prompts: the rlhf validation split is empty"
        return result
    rm = str(out / "rm")
    result["policy"] = mean_reward(str(out / "rlhf"), rm, prompts, tokens, seed)
    result["previous"] = mean_reward(previous, rm, prompts, tokens, seed)
    new, old = result["policy"]["mean"], result["previous"]["mean"]
    result["gain"] = new - old if new is not None and old is not None else None
    return result


def strengths(store: Path, policy: str, previous: str, rounds: int = 200) -> dict[str, Any]:
    """The arena now, relative to the previous policy when it played."""
    from api.bootstrap import caught_up_runner
    from projections.arena import arena_leaderboard

    runner = caught_up_runner(str(store))
    try:
        conn = runner.readmodel.reader()
        board = arena_leaderboard(conn, rounds, anchor=HUMAN)
        names = {p["player"] for p in board["players"]}
        if previous in names:
            board = arena_leaderboard(conn, rounds, anchor=previous)
    finally:
        runner.close()
    players = {p["player"]: p for p in board["players"]}
    pick = ("strength", "interval", "votes", "voters", "comparisons")

    def player(name: str) -> dict[str, Any] | None:
        return {k: players[name][k] for k in pick} if name in players else None

    return {
        "anchor": board["anchor"],
        "policy": player(policy),
        "previous": player(previous),
        "leaderboard": [{k: p[k] for k in ("player", *pick)} for p in board["players"][:BOARD_MAX]],
        "position_bias": board["position_bias"],
    }


def history(store: Path, current: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per registered turn (this one with ``report``): RM accuracy and held-out rewards."""
    from api.flywheel_turns import turns

    rows = []
    for turn in turns(store, rounds=0):
        folder = Path(turn["folder"])
        if folder.resolve() == current.resolve():
            summary = report
        else:
            state = _read(folder / "flywheel.json") or {}
            summary = state.get("steps", {}).get("report", {}).get("summary", {})
        rewards = summary.get("held_out_reward") or {}
        rows.append(
            {
                "turn": turn["turn"],
                "rm_accuracy": rm_validation(folder)["accuracy"],
                "policy_reward": (rewards.get("policy") or {}).get("mean"),
                "previous_reward": (rewards.get("previous") or {}).get("mean"),
            }
        )
    return rows


def turn_report(
    store: Path,
    out: Path,
    policy: str,
    previous: tuple[str, str],
    rlhf_options: dict[str, Any],
    tokens: int,
    from_votes: dict[str, Any] | None,
) -> dict[str, Any]:
    """The report step: figures into the returned summary, the panels into report.png.
    ``previous`` is the previous policy's (registry or reply) name and its path."""
    from api.flywheel_plot import plot_report

    name, path = previous
    report: dict[str, Any] = {
        "previous_policy": name,
        "rm_validation": rm_validation(out),
        "held_out_reward": held_out_rewards(out, path, rlhf_options, tokens),
        "strength": strengths(store, policy, name),
        "from_votes": from_votes,
    }
    turns = history(store, out, report)
    plot_report(out / REPORT_PNG, report, turns, f"flywheel turn {out.name}: {policy} vs {name}")
    report["turns"] = turns
    report["report_png"] = str(out / REPORT_PNG)
    return report
