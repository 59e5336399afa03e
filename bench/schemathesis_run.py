"""Fuzz the HTTP API against its own OpenAPI document with schemathesis (issue 13).

Starts a real uvicorn server (``api.http.app:from_env``) on a fresh data folder, creates a
trusted API client through the root endpoint, seeds one prompt so some ids exist, then
runs ``st run`` over ``/openapi.json`` with every check (``--checks all``: no 5xx, every
status and header documented, bodies match their schemas, schema-invalid data refused,
405 with ``Allow`` for methods a path does not take, ...). Prints the number of test
cases, the failures by check, and exits non-zero when schemathesis found any.

    python -m bench.schemathesis_run [--max-examples 20] [--seed 1] [--workers 2]
                                     [--phases examples,coverage,fuzzing] [--keep DIR]

The case count is schemathesis' own ("N generated"); issue 13 asks for at least 1,000.
Rate limits are off (a fuzzer is one very busy client: 429 would be all it sees).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT_TOKEN = "fuzz-root-token"
REPO = Path(__file__).resolve().parents[1]
CONFIG = Path(__file__).with_name("schemathesis.toml")  # the deliberate exceptions, explained


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data: Path, port: int) -> subprocess.Popen:
    env = dict(
        os.environ,
        DATAENGINE_DATA=str(data),
        DATAENGINE_ROOT_TOKENS=ROOT_TOKEN,
        DATAENGINE_RATE_LIMIT="false",
        DATAENGINE_SYNCHRONOUS="NORMAL",
        HF_HUB_OFFLINE="1",
    )
    command = [sys.executable, "-m", "uvicorn", "--factory", "api.http.app:from_env"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(command, cwd=REPO, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not answer /health within 60 s")


def seed(base: str) -> str:
    """A trusted API key, and one prompt recorded through it."""
    r = httpx.post(
        f"{base}/api/v1/admin/api_client",
        json={"description": "schemathesis", "frontend_type": "fuzz", "trusted": True},
        headers={"Authorization": f"Bearer {ROOT_TOKEN}"},
    )
    r.raise_for_status()
    key = r.json()
    headers = {"X-API-Key": key}
    user = {"id": "fuzz-user", "display_name": "Fuzz", "auth_method": "local"}
    task = httpx.post(
        f"{base}/api/v1/tasks/", json={"type": "initial_prompt", "user": user}, headers=headers
    ).json()
    httpx.post(f"{base}/api/v1/tasks/{task['id']}/ack", json={"message_id": "f1"}, headers=headers)
    httpx.post(
        f"{base}/api/v1/tasks/interaction",
        json={
            "type": "text_reply_to_message",
            "user": user,
            "message_id": "f1",
            "user_message_id": "f1-m",
            "text": "a seeded prompt",
        },
        headers=headers,
    ).raise_for_status()
    return key


def run(args: argparse.Namespace, base: str, key: str, reports: Path) -> tuple[int, str]:
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--workers",
        str(args.workers),
        "--phases",
        args.phases,
        "--continue-on-failure",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-dir",
        str(reports),
        "-H",
        f"X-API-Key: {key}",
        "-H",
        f"Authorization: Bearer {ROOT_TOKEN}",
    ]
    if args.include_path_regex:
        command += ["--include-path-regex", args.include_path_regex]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--phases", default="examples,coverage,fuzzing")
    parser.add_argument("--include-path-regex", default=None, help="only these operations")
    parser.add_argument("--keep", type=Path, help="keep the data folder and reports here")
    args = parser.parse_args(argv)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="fuzz-"))
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(folder / "data", port)
    started = time.monotonic()
    try:
        key = seed(base)
        code, output = run(args, base, key, folder / "reports")
    finally:
        server.terminate()
        server.wait(30)
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(output)
    generated = re.search(r"(\d[\d,]*) generated", output)
    cases = int(generated.group(1).replace(",", "")) if generated else 0
    server_errors = len(re.findall(r"Server error", output))
    undocumented = len(re.findall(r"Undocumented (?:HTTP status code|Content-Type)", output))
    print(
        f"\nschemathesis: {cases:,} test cases in {time.monotonic() - started:.0f} s; "
        f"5xx failures: {server_errors}, undocumented statuses/content types: {undocumented}; "
        f"exit code {code}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
