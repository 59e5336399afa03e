"""Scale-out benchmark: the HTTP crowd of bench/http.py against one server process and
against ``dataengine serve --workers N`` on the same store kind, interleaved rounds.

What it answers: cycles/s, cycle latency p50/p99, the server's CPU per cycle (all its
processes), and how often two processes handed out the same last slot: an answer the
aggregate refused because its target no longer needed it ("refused answers", the same
count as bench/http.py's). With one process the hand-out's in-process claims keep that
near zero; across processes each one's read model may not yet show the other's tasks.

    python -m bench.scaleout [--workers 2] [--clients 16] [--seconds 10] [--rounds 2]
                             [--store postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.http import drive, percentile
from tests.http_helpers import server


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants so far (Linux /proc)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


def one_round(args: argparse.Namespace, workers: int) -> dict[str, float]:
    data = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    command = [sys.executable, "-m", "api.cli", "serve", "--data", str(data)]
    command += ["--port", "{port}", "--workers", str(workers)]
    env = {"DATAENGINE_SYNCHRONOUS": "NORMAL"}
    if args.store:
        env["DATAENGINE_STORE"] = args.store.replace("{n}", str(time.monotonic_ns()))
    try:
        with server(data, command, **env) as (url, proc):
            time.sleep(1.0 if workers > 1 else 0)  # every worker up, not only the first
            cpu = tree_cpu(proc.pid)
            crowd = asyncio.run(drive(url, args.clients, args.seconds, args.warmup, args.active))
            cpu = tree_cpu(proc.pid) - cpu
    finally:
        shutil.rmtree(data, ignore_errors=True)
    elapsed = crowd.elapsed  # type: ignore[attr-defined]
    lat = [x * 1000 for x in crowd.latencies]
    refused = len(crowd.errors)
    no_task = crowd.attempts - crowd.cycles - refused
    handed = max(1, crowd.attempts - no_task)
    found = {
        "cycles/s": crowd.cycles / elapsed,
        "p50 ms": percentile(lat, 0.5),
        "p99 ms": percentile(lat, 0.99),
        "cpu ms/cycle": 1000 * cpu / max(1, crowd.cycles),
        "refused %": 100 * refused / handed,
        "refused": float(refused),
    }
    print(f"  workers={workers}: " + "; ".join(f"{k} {v:.1f}" for k, v in found.items()))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--active", type=int, default=20, help="unfinished trees to keep")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--store",
        help="a PostgreSQL URL; '{n}' in it is replaced per round (e.g. ?schema=b{n})",
    )
    args = parser.parse_args(argv)
    print(
        f"clients={args.clients} seconds={args.seconds:.0f} rounds={args.rounds} "
        f"store={'postgresql' if args.store else 'sqlite'}"
    )
    results: dict[int, list[dict[str, float]]] = {1: [], args.workers: []}
    for i in range(args.rounds):
        print(f"round {i + 1}:")
        for workers in results:  # interleaved: 1 process, then N, each round
            results[workers].append(one_round(args, workers))
    print("medians:")
    base = statistics.median(r["cycles/s"] for r in results[1])
    for workers, rounds in results.items():
        medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        print(
            f"  workers={workers}: "
            + "; ".join(f"{k} {v:.1f}" for k, v in medians.items())
            + f"; cycles/s ratio to 1 process {medians['cycles/s'] / base:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
