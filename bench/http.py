"""HTTP benchmark: N concurrent OA front-end users run full task cycles against uvicorn.

A cycle is what OA's text front end does per task: POST /tasks/ (random, or
initial_prompt while fewer than --active trees are unfinished), POST /tasks/{id}/ack,
POST /tasks/interaction. The server is a real uvicorn process on loopback (one worker:
the store has one writer), started here on a fresh data folder with a small tree config
so trees finish and new ones start. Prints cycles/s, cycle latency p50/p99, the server's
CPU per request and how many answers were refused (an answer to a task whose target no
longer needed it) or found no task.

``--mode reads`` measures the read path instead: after a short crowd run has written
some trees, N clients GET /api/v1/messages/{id} (random ids of the client's messages)
as fast as they can; prints requests/s, latency and server CPU per request.

``--rounds R`` repeats on a fresh server each time and prints the medians.
``--mode table`` prints the throughput table of bench/throughput.py (SQLite and
PostgreSQL, 1 and N server processes, 8 and 32 clients; ``--quick`` about 2 minutes).
``--server-root DIR`` runs the server from another checkout (same harness, same load),
e.g. the previous revision, to compare the two in one run on one machine.

    python -m bench.http [--clients 32] [--seconds 20] [--synchronous FULL|NORMAL]
                         [--client raw|httpx] [--mode cycles|reads] [--rounds 1]
                         [--server-root DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec

from tests.http_helpers import Crowd, new_client_key, server


class RawResponse:
    __slots__ = ("status_code", "content")

    def __init__(self, status_code: int, content: bytes):
        self.status_code, self.content = status_code, content

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return msgspec.json.decode(self.content)


class RawClient:
    """The few calls Crowd makes (``post(path, json=, headers=)``, ``get(path, headers=)``)
    over keep-alive HTTP/1.1 connections, written and parsed by hand.

    httpx spends about 4 ms of CPU per request; on a 2-core machine the load generator
    then takes more CPU than the server and the figure measures the client. This one
    spends some tens of microseconds. It only understands what the server sends:
    Content-Length bodies (uvicorn sends no chunked answers for these endpoints)."""

    def __init__(self, url: str):
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port or 80)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._encode = msgspec.json.Encoder().encode
        self.requests = 0
        # latencies (s) per request kind (``kind_of``) while ``timing`` is on
        self.timings: dict[str, list[float]] = {}
        self.timing = False

    async def request(
        self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None
    ) -> RawResponse:
        body = b"" if json is None else self._encode(json)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        if json is not None:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        self.requests += 1
        began = time.perf_counter()
        conn = (
            self._idle.pop() if self._idle else await asyncio.open_connection(self.host, self.port)
        )
        reader, writer = conn
        writer.write(data)
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        content = await reader.readexactly(length) if length else b""
        self._idle.append(conn)
        if self.timing:
            self.timings.setdefault(kind_of(path), []).append(time.perf_counter() - began)
        return RawResponse(int(status_line.split()[1]), content)

    async def post(
        self, path: str, json: Any = None, headers: dict[str, str] | None = None
    ) -> RawResponse:
        return await self.request("POST", path, json, headers)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> RawResponse:
        return await self.request("GET", path, None, headers)

    async def aclose(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


def kind_of(path: str) -> str:
    """The request type a crowd's path is: request, ack, nack, interaction or counts."""
    if path.endswith("/tasks/"):
        return "request"
    if path.endswith(("/ack", "/nack", "/interaction")):
        return path.rsplit("/", 1)[1]
    return "counts" if "state_counts" in path else "other"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def drive(
    url: str,
    clients: int,
    seconds: float,
    warmup: float,
    active: int,
    raw: bool = True,
    mark: Callable[[], None] | None = None,
) -> Crowd:
    """The crowd's warm-up, then its measured phase; ``mark()`` is called as the measured
    phase starts and as it ends (e.g. to read the server's CPU time). With the raw client
    the crowd gets ``timings``: latencies per request kind of the measured phase."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as setup:
        key = await new_client_key(setup)
        if raw:
            client: Any = RawClient(url)
            try:
                crowd = await _phases(client, key, clients, seconds, warmup, active, mark)
                crowd.requests = client.requests  # type: ignore[attr-defined]
                crowd.timings = client.timings  # type: ignore[attr-defined]
                return crowd
            finally:
                await client.aclose()
        return await _phases(setup, key, clients, seconds, warmup, active, mark)


async def _phases(
    client: Any,
    key: str,
    clients: int,
    seconds: float,
    warmup: float,
    active: int,
    mark: Callable[[], None] | None = None,
) -> Crowd:
    warm = Crowd(client, key, users=clients, trees=10**9, seed=1)
    await warm.run(max_cycles=10**9, duration=warmup, active_target=active, poll_interval=0.05)
    crowd = Crowd(client, key, users=clients, trees=10**9, seed=2)
    crowd.ids = warm.ids  # front-end ids stay unique per client across both phases
    crowd.users = warm.users
    if mark is not None:
        mark()
    raw = isinstance(client, RawClient)
    if raw:
        client.timing = True
    started = time.perf_counter()
    await crowd.run(max_cycles=10**9, duration=seconds, active_target=active, poll_interval=0.05)
    crowd.elapsed = time.perf_counter() - started  # type: ignore[attr-defined]
    if raw:
        client.timing = False
    if mark is not None:
        mark()
    crowd.ready = (await crowd.live_and_ready())[1]  # type: ignore[attr-defined]
    return crowd


async def read_load(
    url: str, clients: int, seconds: float, warmup: float, cpu: Callable[[], float]
) -> dict[str, float]:
    """Writes some trees (``warmup`` seconds of cycles), then GETs messages by id."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as setup:
        key = await new_client_key(setup)
        writer = RawClient(url)
        try:
            await Crowd(writer, key, users=8, trees=10**9, seed=1).run(
                max_cycles=10**9, duration=warmup, active_target=10, poll_interval=0.05
            )
        finally:
            await writer.aclose()
        found = await setup.get(
            "/api/v1/messages/", params={"max_count": 1000}, headers={"X-API-Key": key}
        )
        paths = [f"/api/v1/messages/{m['id']}" for m in found.json()]
    assert paths, "the crowd wrote no messages"
    client, latencies = RawClient(url), []
    headers = {"X-API-Key": key}
    stop = time.perf_counter() + seconds

    async def reader(seed: int) -> None:
        pick = random.Random(seed).choice
        while time.perf_counter() < stop:
            began = time.perf_counter()
            r = await client.get(pick(paths), headers=headers)
            assert r.status_code == 200, r.text
            latencies.append(time.perf_counter() - began)

    used, began = cpu(), time.perf_counter()
    try:
        await asyncio.gather(*(reader(i) for i in range(clients)))
    finally:
        await client.aclose()
    elapsed, used = time.perf_counter() - began, cpu() - used
    ms = [x * 1000 for x in latencies]
    return {
        "requests/s": len(ms) / elapsed,
        "p50 ms": percentile(ms, 0.5),
        "p99 ms": percentile(ms, 0.99),
        "cpu ms/request": 1000 * used / max(1, len(ms)),
        "messages": len(paths),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _command(root: Path | None) -> list[str]:
    uvicorn = [
        sys.executable,
        "-m",
        "uvicorn",
        "api.http.app:from_env",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    # `env -C` execs the server in that folder (same process id, for its CPU time);
    # `python -m` then imports the application from there.
    return ["env", "-C", str(root.resolve()), *uvicorn] if root is not None else uvicorn


def cycles_round(args: argparse.Namespace, data: Path) -> dict[str, float]:
    with server(data, _command(args.server_root), DATAENGINE_SYNCHRONOUS=args.synchronous) as (
        url,
        proc,
    ):
        cpu = cpu_seconds(proc.pid)
        crowd = asyncio.run(
            drive(
                url, args.clients, args.seconds, args.warmup, args.active, raw=args.client == "raw"
            )
        )
        cpu = cpu_seconds(proc.pid) - cpu
    elapsed = crowd.elapsed  # type: ignore[attr-defined]
    lat = [x * 1000 for x in crowd.latencies]
    refused = len(crowd.errors)
    no_task = crowd.attempts - crowd.cycles - refused  # answered 1006: nothing to hand out
    # the requests the server answered (warm-up included): counted by the raw client,
    # estimated for httpx (3 per cycle, 4 per refused one, 1 per empty hand-out)
    requests = getattr(crowd, "requests", 3 * crowd.cycles + 4 * refused + no_task)
    print(
        f"  cycles: {crowd.cycles} in {elapsed:.1f}s = {crowd.cycles / elapsed:.0f} cycles/s; "
        f"latency ms p50 {percentile(lat, 0.5):.1f} p99 {percentile(lat, 0.99):.1f} "
        f"max {max(lat, default=float('nan')):.1f}"
    )
    print(
        f"  server CPU {cpu:.1f}s over {args.warmup + elapsed:.1f}s: "
        f"{1000 * cpu / max(1, requests):.2f} ms per request ({requests} requests, "
        f"warm-up included)"
    )
    print(
        f"  hand-outs {crowd.attempts - no_task}: refused answers {refused} "
        f"({100 * refused / max(1, crowd.attempts - no_task):.1f}%), empty hand-outs "
        f"{no_task}; types {dict(sorted(crowd.types.items()))}; "
        f"trees ready {crowd.ready}"
    )  # type: ignore[attr-defined]
    return {
        "cycles/s": crowd.cycles / elapsed,
        "p50 ms": percentile(lat, 0.5),
        "p99 ms": percentile(lat, 0.99),
        "cpu ms/request": 1000 * cpu / max(1, requests),
        "refused %": 100 * refused / max(1, crowd.attempts - no_task),
        "empty hand-outs": no_task,
    }


def reads_round(args: argparse.Namespace, data: Path) -> dict[str, float]:
    with server(data, _command(args.server_root), DATAENGINE_SYNCHRONOUS=args.synchronous) as (
        url,
        proc,
    ):
        found = asyncio.run(
            read_load(url, args.clients, args.seconds, args.warmup, lambda: cpu_seconds(proc.pid))
        )
    print(
        "  "
        + "; ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in found.items()
        )
    )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode",
        default="cycles",
        choices=("cycles", "reads", "table"),
        help="table: the issue-14 throughput table (bench.throughput; its options follow)",
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1, help="fresh server each; medians")
    parser.add_argument("--active", type=int, default=20, help="unfinished trees to keep")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    parser.add_argument("--data", type=Path, help="data folder (default: a fresh temp folder)")
    parser.add_argument(
        "--server-root", type=Path, help="run the server from this checkout (default: this one)"
    )
    parser.add_argument(
        "--client",
        default="raw",
        choices=("raw", "httpx"),
        help="raw: a minimal keep-alive HTTP/1.1 client (default), so the "
        "load generator's CPU does not crowd out the server's",
    )
    argv = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(argv):  # the table's options are its own (--clients 8,32 ...)
        if arg == "--mode=table" or (arg == "--mode" and argv[i + 1 : i + 2] == ["table"]):
            from bench.throughput import main as table

            return table([a for j, a in enumerate(argv) if j not in (i, i + (arg == "--mode"))])
    args = parser.parse_args(argv)
    print(
        f"mode={args.mode} clients={args.clients} seconds={args.seconds:.0f} "
        f"synchronous={args.synchronous} client={args.client} rounds={args.rounds}"
        + (f" server-root={args.server_root}" if args.server_root else "")
    )
    rounds = []
    for i in range(args.rounds):
        data = (
            args.data / f"round{i}" if args.data else Path(tempfile.mkdtemp(prefix="bench-http-"))
        )
        data.mkdir(parents=True, exist_ok=True)
        print(f"round {i + 1}:")
        rounds.append((cycles_round if args.mode == "cycles" else reads_round)(args, data))
        if not args.data:
            shutil.rmtree(data, ignore_errors=True)
    if args.rounds > 1:
        print(
            "medians: "
            + "; ".join(f"{k} {statistics.median(r[k] for r in rounds):.2f}" for k in rounds[0])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
