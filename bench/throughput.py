"""The throughput table (issue 14): full task cycles/s and p50/p99 per request type for
SQLite and PostgreSQL, one server process and ``serve --workers N``, at 8 and 32 clients,
with the server CPU per cycle; medians of interleaved rounds, all in one run.

The workload is OA's defaults-like: trees of goal size 5 (--goal), 3 reviews of each
prompt and reply, 3 rankings per parent; the crowd of bench/http.py (request, ack,
interaction per cycle; the raw HTTP client) keeps --active trees unfinished.

CPU per cycle: user + system time of every server process (uvicorn's supervisor and its
workers) and, on PostgreSQL, of the database server's processes (the postmaster and its
backends), over the measured phase only, divided by the cycles completed in it.

Without --store a throw-away PostgreSQL is started here (tests/pg_fixture.PostgresServer:
initdb + pg_ctl in a temporary folder), each round on a fresh schema; when it cannot be
started the PostgreSQL rows are skipped with the reason. ``--server-root DIR`` adds the
same rows for the server of another checkout (e.g. the previous revision), interleaved
with this one's, for a before/after in one run. ``--profile DIR`` samples the server
processes with py-spy during each measured phase and prints where their GIL time goes
(bench/profile_server.py).

    python -m bench.throughput [--quick] [--rounds 3] [--seconds 8] [--workers 2]
                               [--clients 8,32] [--stores sqlite,postgresql]
                               [--store postgresql://...] [--server-root DIR]
                               [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.http import drive, percentile
from bench.profile_server import Profiler
from tests.http_helpers import server

KINDS = ("request", "ack", "interaction")


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (Linux /proc)."""
    total, todo, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


def workload_env(args: argparse.Namespace) -> dict[str, str]:
    """OA's defaults-like tree config (the server reads DATAENGINE_TREE__*)."""
    return {
        "DATAENGINE_TREE__GOAL_TREE_SIZE": str(args.goal),
        "DATAENGINE_TREE__MIN_GOAL_TREE_SIZE": str(min(5, args.goal)),
        "DATAENGINE_TREE__NUM_REVIEWS_INITIAL_PROMPT": "3",
        "DATAENGINE_TREE__NUM_REVIEWS_REPLY": "3",
        "DATAENGINE_TREE__NUM_REQUIRED_RANKINGS": "3",
        "DATAENGINE_SYNCHRONOUS": args.synchronous,
    }


class Postgres:
    """The PostgreSQL the rows run on: --store's, or one started here (None: why not)."""

    def __init__(self, url: str | None):
        self.url, self.server, self.reason = url, None, None
        self._n = itertools.count(1)
        if url is not None:
            return
        from tests.pg_fixture import PostgresServer, available

        self.reason = available()
        if self.reason is None:
            try:
                self.server = PostgresServer().start()
            except Exception as e:  # noqa: BLE001 - reported, the SQLite rows still run
                self.reason = f"PostgreSQL did not start: {getattr(e, 'stderr', '') or e}"

    @property
    def usable(self) -> bool:
        return self.url is not None or self.server is not None

    def fresh_url(self) -> str:
        if self.server is not None:
            return self.server.url(f"bench{os.getpid()}_{next(self._n)}")
        assert self.url is not None
        return self.url.replace("{n}", str(time.monotonic_ns()))

    def cpu(self) -> float:
        """The database server's CPU seconds so far (0 when it is not ours to see)."""
        if self.server is None:
            return 0.0
        try:
            pid = int((self.server.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        return tree_cpu(pid)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def _command(data: Path, workers: int, root: Path | None) -> list[str]:
    command = [sys.executable, "-m", "api.cli", "serve", "--data", str(data)]
    command += ["--port", "{port}", "--workers", str(workers)]
    # `env -C` runs the server of another checkout (python -m imports from its folder)
    return ["env", "-C", str(root.resolve()), *command] if root is not None else command


def one_round(
    args: argparse.Namespace,
    pg: Postgres,
    row: tuple[str, int, int, str],
    profiler: Profiler | None = None,
    name: str = "",
) -> dict[str, float]:
    store, workers, clients, which = row
    root = args.server_root if which == "before" else None
    data = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    env = workload_env(args)
    if store == "postgresql":
        env["DATAENGINE_STORE"] = pg.fresh_url()
    cpu: list[float] = []
    try:
        with server(data, _command(data, workers, root), **env) as (url, proc):
            time.sleep(1.0 if workers > 1 else 0)  # every worker up, not only the first

            def mark() -> None:
                cpu.append(tree_cpu(proc.pid) + (pg.cpu() if store == "postgresql" else 0.0))
                if profiler is not None and len(cpu) == 1:  # the measured phase begins
                    profiler.start(proc.pid, args.seconds, name)

            crowd = asyncio.run(
                drive(url, clients, args.seconds, args.warmup, args.active, mark=mark)
            )
            if profiler is not None:
                profiler.wait()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return _figures(crowd, cpu[-1] - cpu[0])


def _figures(crowd: Any, cpu: float) -> dict[str, float]:
    refused = len(crowd.errors)
    no_task = crowd.attempts - crowd.cycles - refused
    found = {
        "cycles/s": crowd.cycles / crowd.elapsed,
        "cycle p50": percentile([x * 1000 for x in crowd.latencies], 0.5),
        "cycle p99": percentile([x * 1000 for x in crowd.latencies], 0.99),
    }
    for kind in KINDS:
        ms = [x * 1000 for x in crowd.timings.get(kind, [])]
        found[f"{kind} p50"] = percentile(ms, 0.5)
        found[f"{kind} p99"] = percentile(ms, 0.99)
    found["cpu ms/cycle"] = 1000 * cpu / max(1, crowd.cycles)
    found["refused %"] = 100 * refused / max(1, crowd.attempts - no_task)
    return found


COLUMNS = (
    ("cycles/s", "cyc/s", "{:6.0f}"),
    ("cycle p50", "cyc p50", "{:7.1f}"),
    ("cycle p99", "cyc p99", "{:7.1f}"),
    ("request p50", "req p50", "{:7.1f}"),
    ("request p99", "req p99", "{:7.1f}"),
    ("ack p50", "ack p50", "{:7.1f}"),
    ("ack p99", "ack p99", "{:7.1f}"),
    ("interaction p50", "int p50", "{:7.1f}"),
    ("interaction p99", "int p99", "{:7.1f}"),
    ("cpu ms/cycle", "cpu ms", "{:6.2f}"),
    ("refused %", "refused%", "{:8.1f}"),
)


def _label(row: tuple[str, int, int, str], with_which: bool) -> str:
    store, workers, clients, which = row
    label = f"{store:<10} {workers:>5} {clients:>7}"
    return f"{label} {which:<6}" if with_which else label


def print_table(results: dict[tuple[str, int, int, str], list[dict[str, float]]], both: bool):
    head = f"{'store':<10} {'procs':>5} {'clients':>7}" + (f" {'server':<6}" if both else "")
    print(head + " " + " ".join(f"{title:>{len(fmt.format(0))}}" for _, title, fmt in COLUMNS))
    for row, rounds in results.items():
        if not rounds:
            continue
        medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        cells = " ".join(fmt.format(medians[key]) for key, _, fmt in COLUMNS)
        print(f"{_label(row, both)} {cells}")
    print("(latencies in ms; cpu ms: server CPU per cycle, all its processes and PostgreSQL's)")


def _key(row: tuple[str, int, int, str]) -> str:
    store, workers, clients, which = row
    return f"{store}-{workers}p-{clients}c-{which}"


def print_profiles(profiler: Profiler, rows: list[tuple[str, int, int, str]]) -> None:
    print("where the GIL time goes (py-spy --gil samples of every server process, all rounds):")
    for row in rows:
        samples, shares = profiler.shares(_key(row))
        if samples:
            cells = ", ".join(f"{name} {share:.0f}%" for name, share in shares if share >= 0.5)
            print(f"  {_label(row, True)} ({samples} samples): {cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 short rounds (~2 minutes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2, help="N of the N-process rows")
    parser.add_argument("--clients", default="8,32")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--active", type=int, default=20, help="unfinished trees to keep")
    parser.add_argument("--goal", type=int, default=5, help="goal tree size (>= 5)")
    parser.add_argument("--synchronous", default="NORMAL", choices=("FULL", "NORMAL"))
    parser.add_argument("--store", help="a PostgreSQL URL ('{n}' is replaced per round)")
    parser.add_argument("--server-root", type=Path, help="also rows for this checkout's server")
    parser.add_argument(
        "--profile", type=Path, help="sample the servers with py-spy into this folder; shares"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup = 2, 3.0, 1.0
        args.clients = "8,32" if args.server_root is None else "32"
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    pg = Postgres(args.store) if "postgresql" in stores else None
    if pg is not None and not pg.usable:
        print(f"PostgreSQL rows skipped: {pg.reason}")
        stores.remove("postgresql")
    elif pg is not None and pg.server is None:
        print("--store: that PostgreSQL server's own CPU is not in the CPU column")
    profiler = Profiler(args.profile) if args.profile else None
    which = ("before", "after") if args.server_root else ("this",)
    rows = [
        (store, workers, int(clients), w)
        for store in stores
        for workers in sorted({1, args.workers})
        for clients in args.clients.split(",")
        for w in which
    ]
    print(
        f"goal tree size {args.goal}, 3 reviews, 3 rankings; {args.rounds} rounds of "
        f"{args.seconds:.0f}s (+{args.warmup:.0f}s warm-up), rows interleaved; "
        f"synchronous={args.synchronous}; {os.cpu_count()} cores"
    )
    results: dict[tuple[str, int, int, str], list[dict[str, float]]] = {r: [] for r in rows}
    try:
        for i in range(args.rounds):
            for row in rows:
                try:
                    found = one_round(args, pg, row, profiler, f"{_key(row)}-r{i + 1}")  # type: ignore[arg-type]
                except Exception as e:  # noqa: BLE001 - one failed round: said, not a median
                    print(f"  round {i + 1} {_label(row, True)}: failed: {e!r}"[:400], flush=True)
                    continue
                results[row].append(found)
                print(
                    f"  round {i + 1} {_label(row, True)}: {found['cycles/s']:.0f} cycles/s, "
                    f"p99 {found['cycle p99']:.0f} ms, {found['cpu ms/cycle']:.2f} ms CPU/cycle",
                    flush=True,
                )
    finally:
        if pg is not None:
            pg.stop()
    print(f"medians of {args.rounds} rounds:")
    print_table(results, both=args.server_root is not None)
    if profiler is not None:
        print_profiles(profiler, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
