"""HTTP benchmark: N concurrent OA front-end users run full task cycles against uvicorn.

A cycle is what OA's text front end does per task: POST /tasks/ (random, or
initial_prompt while fewer than --active trees are unfinished), POST /tasks/{id}/ack,
POST /tasks/interaction. The server is a real uvicorn process on loopback (one worker:
the store has one writer), started here on a fresh data folder with a small tree config
so trees finish and new ones start. Prints cycles/s and cycle latency p50/p99.

    python -m bench.http [--clients 32] [--seconds 20] [--synchronous FULL|NORMAL]
                         [--client raw|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
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

    async def request(self, method: str, path: str, json: Any = None,
                      headers: dict[str, str] | None = None) -> RawResponse:
        body = b"" if json is None else self._encode(json)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        if json is not None:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        conn = self._idle.pop() if self._idle else await asyncio.open_connection(self.host, self.port)
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
        return RawResponse(int(status_line.split()[1]), content)

    async def post(self, path: str, json: Any = None,
                   headers: dict[str, str] | None = None) -> RawResponse:
        return await self.request("POST", path, json, headers)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> RawResponse:
        return await self.request("GET", path, None, headers)

    async def aclose(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def drive(url: str, clients: int, seconds: float, warmup: float, active: int,
                raw: bool = True) -> Crowd:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as setup:
        key = await new_client_key(setup)
        if raw:
            client: Any = RawClient(url)
            try:
                return await _phases(client, key, clients, seconds, warmup, active)
            finally:
                await client.aclose()
        return await _phases(setup, key, clients, seconds, warmup, active)


async def _phases(client: Any, key: str, clients: int, seconds: float, warmup: float,
                  active: int) -> Crowd:
    warm = Crowd(client, key, users=clients, trees=10**9, seed=1)
    await warm.run(max_cycles=10**9, duration=warmup, active_target=active, poll_interval=0.05)
    crowd = Crowd(client, key, users=clients, trees=10**9, seed=2)
    crowd.ids = warm.ids  # front-end ids stay unique per client across both phases
    crowd.users = warm.users
    started = time.perf_counter()
    await crowd.run(max_cycles=10**9, duration=seconds, active_target=active, poll_interval=0.05)
    crowd.elapsed = time.perf_counter() - started  # type: ignore[attr-defined]
    crowd.ready = (await crowd.live_and_ready())[1]  # type: ignore[attr-defined]
    return crowd


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--active", type=int, default=20, help="unfinished trees to keep")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    parser.add_argument("--data", type=Path, help="data folder (default: a fresh temp folder)")
    parser.add_argument("--client", default="raw", choices=("raw", "httpx"),
                        help="raw: a minimal keep-alive HTTP/1.1 client (default), so the "
                             "load generator's CPU does not crowd out the server's")
    args = parser.parse_args(argv)
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-http-"))
    data.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "uvicorn", "api.http.app:from_env", "--factory",
               "--host", "127.0.0.1", "--port", "{port}", "--no-access-log",
               "--log-level", "warning"]
    with server(data, command, DATAENGINE_SYNCHRONOUS=args.synchronous) as (url, proc):
        cpu = cpu_seconds(proc.pid)
        crowd = asyncio.run(drive(url, args.clients, args.seconds, args.warmup, args.active,
                                  raw=args.client == "raw"))
        cpu = cpu_seconds(proc.pid) - cpu
    elapsed = crowd.elapsed  # type: ignore[attr-defined]
    lat = [x * 1000 for x in crowd.latencies]
    print(f"clients={args.clients} seconds={args.seconds:.0f} synchronous={args.synchronous} "
          f"client={args.client}")
    print(f"cycles: {crowd.cycles} in {elapsed:.1f}s = {crowd.cycles / elapsed:.0f} cycles/s "
          f"({3 * crowd.cycles / elapsed:.0f} task requests/s)")
    if lat:
        print(f"cycle latency ms: p50 {percentile(lat, 0.5):.1f}  p99 {percentile(lat, 0.99):.1f}"
              f"  mean {statistics.fmean(lat):.1f}  max {max(lat):.1f}")
    requests = 3 * (crowd.cycles + len(crowd.errors))  # warm-up and refused cycles included
    print(f"server CPU: {cpu:.1f}s over {args.warmup + elapsed:.1f}s "
          f"(~{1000 * cpu / max(1, requests):.2f} ms per request, warm-up included)")
    print(f"task types: {dict(sorted(crowd.types.items()))}")
    print(f"refused answers (races between hand-out and answer): {len(crowd.errors)}; "
          f"trees ready for export: {crowd.ready}")  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
