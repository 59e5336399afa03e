"""HTTP benchmark: N concurrent OA front-end users run full task cycles against uvicorn.

A cycle is what OA's text front end does per task: POST /tasks/ (random, or
initial_prompt while fewer than --active trees are unfinished), POST /tasks/{id}/ack,
POST /tasks/interaction. The server is a real uvicorn process on loopback (one worker:
the store has one writer), started here on a fresh data folder with a small tree config
so trees finish and new ones start. Prints cycles/s and cycle latency p50/p99.

    python -m bench.http [--clients 32] [--seconds 20] [--synchronous FULL|NORMAL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.http_helpers import Crowd, new_client_key, server


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def drive(url: str, clients: int, seconds: float, warmup: float, active: int) -> Crowd:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        key = await new_client_key(client)
        warm = Crowd(client, key, users=clients, trees=10**9, seed=1)
        await warm.run(max_cycles=10**9, check_every=25, duration=warmup, active_target=active)
        crowd = Crowd(client, key, users=clients, trees=10**9, seed=2)
        crowd.ids = warm.ids  # front-end ids stay unique per client across both phases
        crowd.users = warm.users
        started = time.perf_counter()
        await crowd.run(max_cycles=10**9, check_every=25, duration=seconds, active_target=active)
        crowd.elapsed = time.perf_counter() - started  # type: ignore[attr-defined]
        crowd.ready = (await crowd.live_and_ready())[1]  # type: ignore[attr-defined]
        return crowd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--active", type=int, default=20, help="unfinished trees to keep")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    parser.add_argument("--data", type=Path, help="data folder (default: a fresh temp folder)")
    args = parser.parse_args(argv)
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-http-"))
    command = [sys.executable, "-m", "uvicorn", "api.http.app:from_env", "--factory",
               "--host", "127.0.0.1", "--port", "{port}", "--no-access-log",
               "--log-level", "warning"]
    with server(data, command, DATAENGINE_SYNCHRONOUS=args.synchronous) as (url, _):
        crowd = asyncio.run(drive(url, args.clients, args.seconds, args.warmup, args.active))
    elapsed = crowd.elapsed  # type: ignore[attr-defined]
    lat = [x * 1000 for x in crowd.latencies]
    print(f"clients={args.clients} seconds={args.seconds:.0f} synchronous={args.synchronous}")
    print(f"cycles: {crowd.cycles} in {elapsed:.1f}s = {crowd.cycles / elapsed:.0f} cycles/s "
          f"({3 * crowd.cycles / elapsed:.0f} task requests/s)")
    if lat:
        print(f"cycle latency ms: p50 {percentile(lat, 0.5):.1f}  p99 {percentile(lat, 0.99):.1f}"
              f"  mean {statistics.fmean(lat):.1f}  max {max(lat):.1f}")
    print(f"task types: {dict(sorted(crowd.types.items()))}")
    print(f"refused answers (races between hand-out and answer): {len(crowd.errors)}; "
          f"trees ready for export: {crowd.ready}")  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
