"""Benchmark: build every dataset kind from an oasst2-sized store (goal: under 10 s).

The store is filled by importing generated export trees (ranked, reviewed, with emojis),
the fastest way to get ~14k ready trees and ~135k messages into the log; it is kept in
--data and reused by later runs. Two build paths are timed, interleaved, --repeat times:

  replay      the log replayed up to its end (slim replay), rows cut, JSONL + parquet + HF
              folders written, manifest with sha256 of every file
  projection  the same output from the training projection's pre-cut rows (byte-identical;
              checked once here), which needs the projection at the log's end: it is
              caught up beforehand (the whole log on a fresh store), and that time is
              printed too

Medians are printed, wall clock and CPU (this process and its threads): on a shared
machine the wall clock also counts the time other processes hold the cores. The audit
record (the hash chain a manifest quotes) is brought up to date before timing: it is kept
current incrementally, a first build of a store pays for hashing the whole log once.

    .venv/bin/python bench/datasets.py              # 14,000 trees
    .venv/bin/python bench/datasets.py --quick      # 1,000 trees
    .venv/bin/python bench/datasets.py --profile    # cProfile of one replay build
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.bootstrap import open_app  # noqa: E402
from domain.service.oa_import import import_trees  # noqa: E402
from projections import log_reader  # noqa: E402
from projections.datasets import build as builder  # noqa: E402
from projections.datasets.live import TrainingProjection  # noqa: E402
from projections.datasets.rows import BuildOptions  # noqa: E402
from projections.log import SQLiteLog  # noqa: E402
from projections.runner import ProjectionRunner  # noqa: E402
from projections.store import READMODEL_FILE  # noqa: E402

GOAL = 10.0
WORDS = (
    "the a model answer question data tree rank prompt reply helpful quite often "
    "because people write long texts about many things when asked politely"
).split()


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 60)))


def generated_trees(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Trees shaped like oasst2's ready ones: ~9.6 messages, ranked assistant siblings."""
    rng = random.Random(seed)
    for _ in range(count):
        ids = iter(lambda: str(UUID(int=rng.getrandbits(128), version=4)), None)

        def message(role: str, parent: str | None, depth: int, rank: int | None) -> dict[str, Any]:
            m = {
                "message_id": next(ids),  # noqa: B023 (used before the loop moves on)
                "parent_id": parent,
                "text": text(rng),
                "role": role,
                "lang": "en",
                "review_count": 3,
                "review_result": True,
                "deleted": False,
                "synthetic": False,
                "rank": rank,
                "replies": [],
            }
            if rng.random() < 0.4:
                m["emojis"] = {"+1": rng.randint(1, 4)}
            if role == "prompter" and depth < 4:
                n = rng.choice((0, 2, 3, 3)) if depth else 3
                m["replies"] = [
                    message("assistant", m["message_id"], depth + 1, r if n > 1 else None)
                    for r in range(n)
                ]
            elif role == "assistant" and depth < 3 and rng.random() < 0.45:
                m["replies"] = [
                    message("prompter", m["message_id"], depth + 1, None)
                    for _ in range(rng.randint(1, 2))
                ]
            return m

        root = message("prompter", None, 0, None)
        yield {
            "message_tree_id": root["message_id"],
            "tree_state": "ready_for_export",
            "prompt": root,
        }


def fill(folder: Path, trees: int) -> None:
    db = folder / log_reader.EVENTS_FILE
    if db.exists() and log_reader.count_trees(db, log_reader.log_position(db)) == trees:
        print(f"reusing the store in {folder}")
        return
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    report = import_trees(open_app(folder), generated_trees(trees), batch_size=500)
    print(f"imported {report.imported} trees in {time.perf_counter() - started:.1f} s")


def timed(fn: Any) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def same_files(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


def phases(folder: Path, position: int) -> str:
    """One replay build split into its steps."""
    db, options = log_reader.events_db(folder), BuildOptions()
    replay_s, _, trees = timed(lambda: list(builder.replay_trees(db, position)))
    cut_s, _, collected = timed(lambda: builder.collect(trees, options))
    out = Path(tempfile.mkdtemp(prefix="dataengine-datasets-"))
    try:
        write_s, _, _ = timed(lambda: builder._write(out / "ds", collected, options, None))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return f"replay {replay_s:.2f} s, cut rows {cut_s:.2f} s, write {write_s:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 trees instead of 14,000")
    parser.add_argument("--trees", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=None, help="store folder (kept for reuse)")
    parser.add_argument("--profile", action="store_true", help="cProfile one replay build")
    args = parser.parse_args()
    trees = args.trees or (1_000 if args.quick else 14_000)
    folder = args.data or Path(tempfile.gettempdir()) / f"dataengine-bench-datasets-{trees}"
    fill(folder, trees)
    db = log_reader.events_db(folder)
    position = log_reader.log_position(db)
    audit_s, _, _ = timed(lambda: builder._audit_digest(folder, position))
    # Only the training projection's own tables and tracking row are touched.
    runner = ProjectionRunner(
        SQLiteLog(db), folder / READMODEL_FILE, [TrainingProjection()], batch_size=50_000
    )
    behind = position - runner.position
    project_s, project_cpu, _ = timed(runner.run_once)
    runner.close()
    messages = sum(len(t.messages) for t in builder.replay_trees(db, position))
    print(f"store: {trees} trees, {messages} messages, {position} events")
    print(f"audit record brought up to date: {audit_s:.2f} s (once)")
    print(
        f"training projection caught up over {behind} events: {project_s:.2f} s wall, "
        f"{project_cpu:.2f} s CPU"
    )

    out = Path(tempfile.mkdtemp(prefix="dataengine-datasets-"))
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(builder.build, folder, out / "p", BuildOptions(), source="replay")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    figures: dict[str, list[tuple[float, float]]] = {"replay": [], "projection": []}
    identical = None
    try:
        for _ in range(args.repeat):
            for source in figures:
                wall, cpu, manifest = timed(
                    lambda s=source: builder.build(folder, out / s, BuildOptions(), source=s)
                )
                assert manifest.source == source
                figures[source].append((wall, cpu))
            if identical is None:
                identical = same_files(out / "replay", out / "projection")
            # Removed at once: gigabytes of dirty pages would slow the next runs' writes.
            for source in figures:
                shutil.rmtree(out / source)
        print("phases of a replay build:", phases(folder, position))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    rows = sum(c["train"] + c["validation"] for c in manifest["rows"].values())
    per_kind = ", ".join(f"{k} {c['train'] + c['validation']}" for k, c in manifest["rows"].items())
    print(f"rows: {rows} ({per_kind})")
    for source, runs in figures.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(
            f"datasets build from {source:10}: {wall:6.2f} s wall, {cpu:6.2f} s CPU "
            f"(median of {len(runs)}); {wall / GOAL:.2f} x the {GOAL:.0f} s goal: "
            f"{'met' if wall < GOAL else 'NOT met'}"
        )
    print(f"both paths wrote byte-identical files: {identical}")


if __name__ == "__main__":
    main()
