"""Benchmark: hash-chain verification of an oasst2-scale log (goal: >= 200k events/s).

    .venv/bin/python bench/audit.py            # 2,000,000 events
    .venv/bin/python bench/audit.py --quick    # 200,000 events

The log is generated once per size and reused (``--fresh`` regenerates): whole trees are
driven through the ConversationTree commands (prompt, 3 reviews, lottery, replies each
reviewed 3 times until the goal size, 3 rankings per rankable parent, scoring), so the rows
are real events with real sizes, then written in large batches through the application's
mapper and recorder. Timed: recording the digest from scratch, a full ``verify`` against
the checkpoints, ``verify --digest/--position`` (needs nothing but the log), and an
incremental digest with nothing new. The file is in the page cache (just written or read).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from api.bootstrap import open_app  # noqa: E402
from api.storage.events import EVENTS_FILE  # noqa: E402
from domain.model.actor import Actor  # noqa: E402
from domain.model.config import TreeConfig  # noqa: E402
from domain.model.states import TreeState  # noqa: E402
from domain.model.tree import ConversationTree  # noqa: E402
from domain.model.tree_rules import rankable_children, rankable_parents  # noqa: E402
from projections.audit.record import AUDIT_FILE, AuditStore, log_head, open_log, record  # noqa: E402
from projections.audit.verify import default_workers, verify, verify_digest  # noqa: E402

CONFIG = TreeConfig(goal_tree_size=6, min_goal_tree_size=1)
LABELS = {"spam": 0.0, "lang_mismatch": 0.0, "quality": 0.75, "helpfulness": 0.5}
WORDS = (
    "the moon pulls on the oceans so water bulges toward it and away from it on the "
    "far side which is why most coasts see two high tides every day while the sun adds "
    "a smaller pull that makes spring and neap tides"
).split()


def text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(8, 120)))


def grow_tree(rng: random.Random, client: object) -> ConversationTree:
    """One tree from prompt to ready_for_export; every actor is a fresh user."""

    def someone() -> Actor:
        return Actor(uuid4(), client)

    tree = ConversationTree.start(
        message_id=uuid4(), text=text(rng), lang="en", actor=someone(), config=CONFIG
    )

    def review(message_id: object) -> None:
        for _ in range(CONFIG.num_reviews_initial_prompt):
            tree.submit_labels(message_id=message_id, labels=LABELS, actor=someone(), config=CONFIG)

    review(tree.id)
    if tree.state is TreeState.PROMPT_LOTTERY_WAITING:
        tree.activate(config=CONFIG)
    parents = [tree.id]
    while tree.state is TreeState.GROWING and parents:
        parent = parents[0]
        reply = tree.add_reply(
            message_id=uuid4(), parent_id=parent, text=text(rng), actor=someone(), config=CONFIG
        )
        review(reply.id)
        if reply.depth < CONFIG.max_tree_depth:
            parents.append(reply.id)
        # Assistant messages take one prompter reply (num_prompter_replies), prompts 2-3.
        wanted = 1 if tree.messages[parent].role.value == "assistant" else rng.choice((2, 3))
        if len(tree.messages[parent].children) >= min(wanted, CONFIG.max_children_count):
            parents.pop(0)
    while tree.state is TreeState.RANKING:
        for parent in rankable_parents(tree, CONFIG):
            while (
                tree.state is TreeState.RANKING
                and len(parent.rankings) < CONFIG.num_required_rankings
            ):
                order = [c.id for c in rankable_children(tree, parent, CONFIG)]
                rng.shuffle(order)
                tree.submit_ranking(
                    parent_id=parent.id, ranked_message_ids=order, actor=someone(), config=CONFIG
                )
    return tree


def generate(folder: Path, events: int, seed: int = 7) -> int:
    app = open_app(folder, CONFIG)
    rng = random.Random(seed)
    client = uuid4()
    written = log_head(open_log(folder / EVENTS_FILE))
    with tqdm(
        total=events,
        initial=written,
        unit="ev",
        unit_scale=True,
        desc="generating",
        file=sys.stderr,
    ) as bar:
        while written < events:
            batch = []
            while len(batch) < 20_000:
                batch.extend(
                    app.mapper.to_stored_event(e) for e in grow_tree(rng, client).collect_events()
                )
            batch = batch[: events - written]  # an exact size; a cut tree is still valid rows
            app.recorder.insert_events(batch)
            written += len(batch)
            bar.update(len(batch))
    app.close()
    return written


def timed(label: str, events: int, action):  # type: ignore[no-untyped-def]
    """Run once; print wall-clock and this process's CPU rate (the machine may be shared)."""
    cpu, start = time.process_time(), time.perf_counter()
    result = action()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rate = events / seconds if seconds else float("inf")
    cpu_rate = f"{events / cpu:>12,.0f}/s cpu" if cpu > 0.05 else ""
    print(f"{label:<44} {events:>10,} ev {seconds:7.2f} s {rate:>12,.0f} ev/s {cpu_rate}")
    return result, rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--quick", action="store_true", help="200,000 events")
    parser.add_argument("--data", default=None, help="folder for the generated log")
    parser.add_argument("--fresh", action="store_true", help="regenerate the log")
    args = parser.parse_args()
    events = 200_000 if args.quick else args.events
    folder = Path(args.data or f"/tmp/dataengine-bench-audit-{events}")
    folder.mkdir(parents=True, exist_ok=True)
    if args.fresh and (folder / EVENTS_FILE).exists():
        for name in os.listdir(folder):
            (folder / name).unlink()
    have = log_head(open_log(folder / EVENTS_FILE))
    if have < events:
        generate(folder, events)
    (folder / AUDIT_FILE).unlink(missing_ok=True)
    log = open_log(folder / EVENTS_FILE)
    n = log_head(log)
    size = (folder / EVENTS_FILE).stat().st_size
    print(f"log: {n:,} events, {size / 2**20:,.0f} MiB ({size / n:,.0f} bytes/event) in {folder}")

    store = AuditStore(folder / AUDIT_FILE)
    (position, digest, _, _), _ = timed(
        "digest from scratch (hash + record)", n, lambda: record(log, store)
    )
    audit_size = sum(p.stat().st_size for p in folder.glob(AUDIT_FILE + "*"))
    print(f"record: {len(store.checkpoints()):,} checkpoints, {audit_size / 2**20:,.0f} MiB")
    rates = []
    workers = default_workers()
    for run in (1, 2):
        report, rate = timed(f"verify, 1 process (run {run})", n, lambda: verify(log, store))
        assert report.intact and report.digest == digest, report.damage[:3]
        rates.append(rate)
    if workers > 1:
        report, rate = timed(
            f"verify, {workers} processes", n, lambda: verify(log, store, workers=workers)
        )
        assert report.intact and report.digest == digest, report.damage[:3]
        rates.append(rate)
    report, _ = timed(
        f"verify --digest D --position P, {workers} proc.",
        n,
        lambda: verify_digest(log, store, digest, position, workers=workers),
    )
    assert report.intact
    timed("digest again, nothing new (incremental)", 0, lambda: record(log, store))
    best = max(rates)
    print(
        f"verify throughput: {best:,.0f} events/s wall clock, {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f} (goal >= 200,000: {'met' if best >= 200_000 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
