"""Where a server's GIL time goes during a benchmark's measured phase (py-spy).

``Profiler.start(pid, seconds, name)`` samples every server process under ``pid`` (uvicorn's
workers, or the one process) with ``py-spy record --gil --nonblocking``: only the
thread holding the GIL is sampled, so the shares are shares of the Python work that
serializes a process. ``shares(name)`` sums a row's files into the categories below (a
sample counts for the first category whose marker its stack holds).

py-spy is not a dependency (``pip install py-spy``); without it nothing is sampled and the
reason is said once. Sampling a process needs ptrace rights (root, or ptrace_scope 0).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

# (category, markers in a stack): the first match wins, so the specific come first
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("projection runner", ("projection-runner",)),
    ("audit chain", ("audit-follower", "AuditFollower")),
    ("leases, process loop", ("LeaseKeeper", "ProcessLoop")),
    ("shared claims", ("SharedClaims", "claim_log")),
    ("head queries", ("head_async", "Service.head ")),
    ("aggregate loads", ("Repository.get", "UnitOfWork.get")),
    ("hand-out", ("Handout.request",)),
    ("event store writes", ("EventStore.put", "insert_events", "GroupCommit")),
    ("task bodies", ("task_body",)),
    ("other handler work", ("Api._wrap.<locals>.run",)),
    ("thread hand-offs", ("concurrent/futures",)),
    ("HTTP (uvicorn, starlette, middleware)", ("uvicorn", "starlette", "Middleware")),
)


def category(stack: str) -> str:
    for name, markers in CATEGORIES:
        if any(m in stack for m in markers):
            return name
    return "other"


def server_pids(pid: int) -> list[int]:
    """The uvicorn workers under ``pid`` (--workers N), or ``pid`` itself."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    python = [c for c in children if b"python" in _cmdline(c)]
    return [c for c in python if b"spawn_main" in _cmdline(c)] or [pid]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class Profiler:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.spy = shutil.which("py-spy")
        self.running: list[subprocess.Popen[bytes]] = []
        if self.spy is None:
            print("--profile: py-spy is not installed (pip install py-spy): nothing sampled")

    def start(self, pid: int, seconds: float, name: str) -> None:
        if self.spy is None:
            return
        for worker in server_pids(pid):
            out = self.folder / f"{name}-{worker}.txt"
            command = [self.spy, "record", "--gil", "--nonblocking", "--threads", "-r", "200"]
            command += ["-d", str(max(1, int(seconds))), "-f", "raw", "-o", str(out)]
            command += ["-p", str(worker)]
            self.running.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )

    def wait(self) -> None:
        for proc in self.running:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.running = []

    def shares(self, prefix: str) -> tuple[int, list[tuple[str, float]]]:
        """(samples, [(category, share %)]) of the files whose names start with ``prefix``."""
        counts: Counter[str] = Counter()
        for path in self.folder.glob(f"{prefix}-*.txt"):
            for line in path.read_text().splitlines():
                stack, _, n = line.rpartition(" ")
                if stack and n.isdigit():
                    counts[category(stack)] += int(n)
        total = sum(counts.values())
        return total, [(k, 100 * v / total) for k, v in counts.most_common()] if total else []
