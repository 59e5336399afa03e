"""What the live audit chain costs command throughput (goal: under 10 %).

The bench/commands.py engine run (worker threads driving trees from prompt to
ready_for_export through DataEngine on SQLite), with and without the audit follower
(projections.audit.live) extending audit.sqlite beside it in the same process, as the
server runs it; with a signing key, so every batch end is also signed. The variants
alternate in each repeat so machine noise hits them alike; medians are printed with
their ratio, and how far the follower was behind the log when the drive ended.

    .venv/bin/python bench/audit_live.py [--trees 80] [--threads 16] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.commands as commands  # noqa: E402
from api.storage.logdb import log_location  # noqa: E402
from domain.model.config import TreeConfig  # noqa: E402
from projections.audit.live import AuditFollower  # noqa: E402
from projections.audit.signing import keygen  # noqa: E402

_plain_open = commands.open_app
_state: dict[str, Any] = {"follow": False, "lag": [], "signed": []}


def _open_with_follower(folder: Path, config: Any, **kwargs: Any) -> Any:
    """open_app for bench/commands.run_engine: the run's first open gets a follower."""
    app = _plain_open(folder, config, **kwargs)
    if not _state["follow"] or (folder / "audit.sqlite").exists():
        return app  # the baseline, or run_engine's reopening to check the run
    keygen(folder)
    follower = AuditFollower(folder, log_location(folder)).start()
    close = app.close

    def close_both() -> None:
        if follower.closed:  # Application.__del__ closes again
            return
        head = app.recorder.max_notification_id() or 0
        _state["lag"].append(head - follower.position)  # behind when the drive ended
        close()
        follower.close()
        _state["signed"].append(follower.signed)

    app.close = close_both
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trees", type=int, default=80)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    commands.open_app = _open_with_follower
    config = TreeConfig()
    rates: dict[str, list[float]] = {"plain": [], "live audit": []}
    for r in range(args.repeat):
        for name in ("plain", "live audit") if r % 2 == 0 else ("live audit", "plain"):
            _state["follow"] = name == "live audit"
            result = commands.run_engine(config, args.trees, args.threads, f"audit-{r}")
            rates[name].append(result.cps)
            print(f"round {r + 1} {name:>10}: {result.cps:8.1f} commands/s", flush=True)
    plain, live = (statistics.median(rates[k]) for k in ("plain", "live audit"))
    print(
        f"\nmedian of {args.repeat} interleaved rounds, {args.threads} threads, {args.trees} trees"
    )
    print(f"  plain       {plain:8.1f} commands/s")
    print(
        f"  live audit  {live:8.1f} commands/s  ({live / plain:.3f} x, cost {1 - live / plain:+.1%})"
    )
    print(f"  follower behind the log when the drive ended: {_state['lag']} events")
    print(f"  signed checkpoints per run: {_state['signed']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
