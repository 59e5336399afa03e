"""Benchmark: `import data` throughput per format and file kind, into the SQLite store.

    .venv/bin/python bench/import_data.py                    # 10,000 rows per format
    .venv/bin/python bench/import_data.py --rows 100000 --formats pairs,prompts --kinds parquet

For each format (prompts, messages, pairs, completions) and file kind (jsonl, parquet) it
generates the rows locally (distinct texts of a few dozen words), then times the two
passes the command runs: the checking pass (read and validate every row) and the recording
pass (read again, build the trees, save them in batches with synchronous FULL, as the
CLI does), each into a fresh data folder. Prints rows/s and events/s of each pass and of
the whole import, the events per row, and the peak RSS; re-importing the same file is
timed too (it must record nothing).
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.bootstrap import open_app  # noqa: E402
from domain.service.importing.readers import DataFile  # noqa: E402
from domain.service.importing.record import (  # noqa: E402
    ImportOptions,
    plan_import,
    record_import,
)
from domain.service.importing.writers import write_rows  # noqa: E402
from projections import log_reader  # noqa: E402

WORDS = "the a model answer question data river blue quick seven light write code why how".split()


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def rows_of(fmt: str, count: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(count):
        prompt = f"{i}: {text(rng, 20)}?"
        if fmt == "prompts":
            rows.append({"prompt": prompt})
        elif fmt == "messages":
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": prompt},
                        {"role": "assistant", "content": text(rng, 40)},
                    ]
                }
            )
        elif fmt == "pairs":
            rows.append({"prompt": prompt, "chosen": text(rng, 40), "rejected": text(rng, 40)})
        else:
            rows.append({"prompt": prompt, "completion": text(rng, 40), "label": i % 3 != 0})
    return rows


def run(path: Path, folder: Path) -> dict[str, float]:
    options = ImportOptions()
    data = DataFile.open(path)
    t0 = time.perf_counter()
    plan = plan_import(data, options)
    t1 = time.perf_counter()
    app = open_app(folder)
    report = record_import(app, data, plan, options)
    t2 = time.perf_counter()
    again = record_import(app, data, plan_import(data, options), options)
    t3 = time.perf_counter()
    assert again.imported == 0 and again.position is None, "re-import recorded something"
    app.close()
    events = log_reader.log_position(log_reader.events_db(folder))
    return {
        "rows": plan.rows,
        "trees": report.imported,
        "events": events,
        "check": t1 - t0,
        "record": t2 - t1,
        "reimport": t3 - t2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--formats", default="prompts,messages,pairs,completions")
    parser.add_argument("--kinds", default="jsonl,parquet")
    args = parser.parse_args()
    header = (
        f"{'format':<12}{'file':<9}{'rows':>8}{'ev/row':>7}{'check r/s':>11}"
        f"{'record r/s':>12}{'record ev/s':>13}{'total r/s':>11}{'reimport r/s':>14}"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats.split(","):
            rows = rows_of(fmt, args.rows)
            for kind in args.kinds.split(","):
                path = Path(tmp) / f"{fmt}.{kind}"
                write_rows(rows, path)
                r = run(path, Path(tmp) / f"data-{fmt}-{kind}")
                n, total = r["rows"], r["check"] + r["record"]
                print(
                    f"{fmt:<12}{kind:<9}{n:>8.0f}{r['events'] / n:>7.1f}"
                    f"{n / r['check']:>11,.0f}{n / r['record']:>12,.0f}"
                    f"{r['events'] / r['record']:>13,.0f}{n / total:>11,.0f}"
                    f"{n / r['reimport']:>14,.0f}",
                    flush=True,
                )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MiB (the generated rows included); goal >= 20,000 rows/s")


if __name__ == "__main__":
    main()
