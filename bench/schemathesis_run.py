"""Fuzz the HTTP API against its own OpenAPI document with schemathesis (issue 13).

Starts a real uvicorn server (``api.http.app:from_env``) on a fresh data folder, creates a
trusted API client through the root endpoint, seeds one prompt so some ids exist, then
runs ``st run`` over ``/openapi.json`` with every check (``--checks all``: no 5xx, every
status and header documented, bodies match their schemas, schema-invalid data refused,
405 with ``Allow`` for methods a path does not take, ...). Prints the number of test
cases and the findings by code; exits non-zero on a server error (ST101/ST102) or anything
undocumented (status, content type, headers, body: ST103-ST110), issue 13's gates. The
other checks' findings (schema-valid data refused, ...) are printed for a reader to judge.

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
from typing import Any

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
    figures = summary(output)
    print(
        f"\nschemathesis: {figures['cases']:,} test cases in {time.monotonic() - started:.0f} s; "
        f"server errors: {figures['server_errors']}, undocumented: {figures['undocumented']}; "
        f"other findings: {figures['other'] or 'none'} (schemathesis exit code {code})"
    )
    return 1 if figures["server_errors"] or figures["undocumented"] or not figures["cases"] else 0


# issue 13's gates: no 5xx, and nothing the document does not state (status, content type,
# headers, body). The other checks' findings are printed for a reader to judge.
SERVER_ERRORS = {"ST101", "ST102"}
UNDOCUMENTED = {"ST103", "ST104", "ST105", "ST106", "ST107", "ST108", "ST109", "ST110"}


def summary(output: str) -> dict[str, Any]:
    """The case count and the failures by code, from st's summary."""
    generated = re.search(r"(\d[\d,]*) generated", output)
    found = {code: int(count) for code, count in re.findall(r"(ST\d{3}) [^:\n]+: (\d+)", output)}
    return {
        "cases": int(generated.group(1).replace(",", "")) if generated else 0,
        "failures": found,
        "server_errors": sum(n for c, n in found.items() if c in SERVER_ERRORS),
        "undocumented": sum(n for c, n in found.items() if c in UNDOCUMENTED),
        "other": {c: n for c, n in found.items() if c not in SERVER_ERRORS | UNDOCUMENTED},
    }


if __name__ == "__main__":
    sys.exit(main())
