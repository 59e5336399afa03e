"""`dataengine audit history|show|digest|verify|replay|keygen`: who did what, when, and proof of it.

Exit codes: 0 checked and intact, 1 checked and damaged (or different), 2 nothing could be
checked (bad input, no event store, nothing recorded to compare with).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any
from uuid import UUID

from api.cli import add_data_option, fail
from api.cli.audit_keys import check_signatures, run_keygen
from api.storage.events import EVENTS_FILE
from api.storage.logdb import describe, log_exists, log_location
from api.storage.unreachable import store_unreachable

# Read models `audit replay` rebuilds and compares: "module:attribute", the attribute being a
# projections.audit.history.ReadModelRebuilder or a function of no arguments returning one.
READ_MODELS: list[str] = ["projections.audit.replay_check:read_model"]


def register(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="history, past states and integrity of the log")
    group = audit.add_subparsers(dest="action", required=True, metavar="ACTION")

    history = group.add_parser("history", help="every event of a tree, with log positions")
    history.add_argument("tree_id")
    history.set_defaults(handler=show_history)

    show = group.add_parser("show", help="a tree as it was at a version or a moment")
    show.add_argument("tree_id")
    show.add_argument(
        "--as-of",
        default=None,
        metavar="VERSION|ISO_TIME",
        help="a version number, or an ISO time (UTC unless it names a zone)",
    )
    show.set_defaults(handler=show_as_of)

    digest = group.add_parser("digest", help="record and print the log's hash-chain digest")
    digest.add_argument(
        "--position",
        type=int,
        default=None,
        help="the digest at this position instead of at the head",
    )
    digest.set_defaults(handler=show_digest)

    verify = group.add_parser("verify", help="recompute the chain; name the first damaged event")
    verify.add_argument("--digest", default=None, help="a digest published earlier (hex)")
    verify.add_argument("--position", type=int, default=None, help="the position it was taken at")
    verify.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes checking blocks of the log in parallel (default: the CPU count, at most 8)",
    )
    verify.add_argument(
        "--public-key",
        default=None,
        help="also check the signed checkpoints against this ed25519 public key (hex or file)",
    )
    verify.add_argument(
        "--blobs", action="store_true", help="also re-hash the image files the log names"
    )
    verify.set_defaults(handler=run_verify)

    keygen = group.add_parser("keygen", help="create the key that signs audit checkpoints")
    keygen.add_argument("--force", action="store_true", help="replace an existing key")
    keygen.set_defaults(handler=run_keygen)

    replay = group.add_parser(
        "replay", help="rebuild every read model and compare it with the live one"
    )
    replay.set_defaults(handler=run_replay)

    for parser in (history, show, digest, verify, replay, keygen):
        add_data_option(parser)
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(handler=_guarded(parser.get_default("handler")))


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A damaged or foreign file is a finding to report, not a crash."""
    import sqlite3

    from projections.audit.record import ChainBroken

    @wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ChainBroken as e:
            return fail(str(e), 1)
        except sqlite3.DatabaseError as e:
            return fail(f"cannot read the store in {args.data}: {e}", 1)
        except Exception as e:
            # A PostgreSQL store that is down or unreachable: nothing could be checked.
            if store_unreachable(e):
                return fail(f"cannot reach the store {describe(log_location(args.data))}: {e}")
            raise

    return run


# ---------------------------------------------------------------------------- plumbing
def _folder(args: argparse.Namespace) -> Path | None:
    folder = Path(args.data)
    return folder if log_exists(log_location(folder)) else None


def _no_store(args: argparse.Namespace) -> int:
    location = log_location(args.data)
    if isinstance(location, Path):
        return fail(f"no event store in {args.data} (expected {Path(args.data) / EVENTS_FILE})")
    return fail(f"no event store in {describe(location)}")


@contextmanager
def _progress(total: int, what: str) -> Iterator[Any]:
    from tqdm import tqdm

    with tqdm(
        total=total,
        unit="ev",
        unit_scale=True,
        desc=what,
        file=sys.stderr,
        disable=None,
        leave=False,
    ) as bar:
        yield bar.update


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _tree_id(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def _uuid(hex_id: str | None) -> str | None:
    try:
        return str(UUID(hex_id)) if hex_id else hex_id
    except ValueError:
        return hex_id  # a damaged id: show it as stored


def _app(folder: Path) -> Any:
    from api.bootstrap import load_config, open_app

    return open_app(folder, load_config(folder))


def _names(app: Any) -> Any:
    @lru_cache(maxsize=4096)
    def name(aggregate_id: UUID, kind: str) -> str | None:
        try:
            found = app.find_user(aggregate_id) if kind == "user" else app.find_client(aggregate_id)
        except Exception:  # an unknown or undecodable actor is shown by id
            return None
        return getattr(found, "username" if kind == "user" else "name", None)

    return name


# ---------------------------------------------------------------------------- views
def show_history(args: argparse.Namespace) -> int:
    from projections.audit.history import format_history, history
    from projections.audit.record import open_log

    tree_id = _tree_id(args.tree_id)
    if tree_id is None:
        return fail(f"not a tree id: {args.tree_id!r}")
    folder = _folder(args)
    if folder is None:
        return _no_store(args)
    app = _app(folder)
    entries = history(open_log(log_location(folder)), app.mapper, tree_id, _names(app))
    if args.json:
        _print_json({"tree_id": str(tree_id), "events": entries})
    else:
        for line in format_history(entries):
            print(line)
    return 0


def show_as_of(args: argparse.Namespace) -> int:
    from domain.model.as_of import parse_as_of
    from projections.audit.history import tree_as_of
    from projections.audit.record import open_log

    tree_id = _tree_id(args.tree_id)
    if tree_id is None:
        return fail(f"not a tree id: {args.tree_id!r}")
    version, moment = None, None
    if args.as_of is not None:
        try:
            version, moment = parse_as_of(args.as_of)
        except ValueError as e:
            return fail(f"--as-of: {e}")
    folder = _folder(args)
    if folder is None:
        return _no_store(args)
    view = tree_as_of(_app(folder), open_log(log_location(folder)), tree_id, version, moment)
    if args.json:
        _print_json(view)
        return 0
    print(
        f"tree {view['id']}  version {view['version']} of {view['current_version']}  "
        f"log position {view['position']}  as of {view['time']}"
    )
    print(f"state {view['state']}  lang {view['lang']}  goal size {view['goal_tree_size']}")
    for m in view["messages"]:
        indent = "  " * (m["depth"] + 1)
        verdict = {True: "accepted", False: "rejected", None: "undecided"}[m["review_result"]]
        flags = " deleted" if m["deleted"] else ""
        rank = f" rank {m['rank']}" if m["rank"] is not None else ""
        print(
            f"{indent}{m['role']} {m['id'][:8]} {verdict} ({m['review_count']} reviews)"
            f"{rank}{flags}: {m['text'][:60]!r}"
        )
        for r in m["reviews"]:
            labels = ", ".join(f"{k}={v:g}" for k, v in r["labels"].items())
            print(f"{indent}  review by {(r['user_id'] or 'system')[:8]}: {labels}")
        for r in m["rankings"]:
            order = "not rankable" if r["not_rankable"] else " > ".join(i[:8] for i in r["ranked"])
            print(f"{indent}  ranking by {(r['user_id'] or 'system')[:8]}: {order}")
    return 0


# ---------------------------------------------------------------------------- integrity
def _open(folder: Path) -> tuple[Any, Any]:
    from projections.audit.record import AUDIT_FILE, AuditStore, open_log

    return open_log(log_location(folder)), AuditStore(folder / AUDIT_FILE)


def show_digest(args: argparse.Namespace) -> int:
    from projections.audit.record import digest_at, log_head, record

    folder = _folder(args)
    if folder is None:
        return _no_store(args)
    log, store = _open(folder)
    try:
        start = store.head()[0]
        with _progress(log_head(log) - start, "hashing") as advance:
            position, digest, added, holes = record(log, store, advance)
        if args.position is not None:
            digest = digest_at(log, store, args.position)
            position = args.position
    except ValueError as e:
        return fail(str(e))
    if args.json:
        _print_json(
            {"position": position, "digest": digest.hex(), "new_events": added, "holes": holes}
        )
    else:
        print(f"position: {position}")
        print(f"digest:   {digest.hex()}")
        print(f"({added} new events hashed and recorded in {store.path})", file=sys.stderr)
    for a, b in holes:
        print(
            f"warning: positions {a}..{b} are absent from the log (deleted rows)", file=sys.stderr
        )
    return 1 if holes else 0


def run_verify(args: argparse.Namespace) -> int:
    from projections.audit.chain import parse_digest
    from projections.audit.record import log_head, record
    from projections.audit.verify import default_workers, verify, verify_digest

    if (args.digest is None) != (args.position is None):
        return fail("--digest and --position go together")
    workers = args.workers or default_workers()
    folder = _folder(args)
    if folder is None:
        return _no_store(args)
    log, store = _open(folder)
    if args.digest is not None:
        try:
            expected = parse_digest(args.digest)
        except ValueError as e:
            return fail(f"bad --digest: {e}")
        if args.position < 1:
            return fail("--position must be at least 1")
        with _progress(min(args.position, log_head(log)), "verifying") as advance:
            report = verify_digest(log, store, expected, args.position, advance, workers)
    else:
        if not store.checkpoints():
            # no server has followed this log yet (the live chain records as events commit):
            # record it now, so later changes are caught; nothing earlier can be vouched for
            print("nothing was recorded yet: recording the chain now", file=sys.stderr)
            record(log, store)
        with _progress(log_head(log), "verifying") as advance:
            report = verify(log, store, progress=advance, workers=workers)
    code = _report(args, report)
    if args.public_key is not None:
        code = max(code, check_signatures(args, store, report))
    if args.blobs:
        from api.cli.audit_blobs import check_blobs

        code = max(code, check_blobs(folder, args.json))
    return code


def _report(args: argparse.Namespace, report: Any) -> int:
    damage = [dict(d.as_dict(), tree_id=_uuid(d.originator_id)) for d in report.damage]
    if args.json:
        _print_json(
            {
                "intact": report.intact,
                "position": report.position,
                "events": report.events,
                "recorded": report.recorded,
                "appended": report.appended,
                "digest": report.digest.hex() if report.intact else None,
                "first_damaged": damage[0] if damage else None,
                "damage": damage,
            }
        )
        return 0 if report.intact else 1
    if report.intact:
        if args.digest is not None:
            print(
                f"intact: the log up to position {args.position} is unchanged since digest "
                f"{args.digest.strip()} was taken"
            )
        else:
            print(
                f"intact: {report.events} events up to position {report.position}; "
                f"every checkpoint up to {report.recorded} matches"
            )
            if report.appended:
                print(
                    f"{report.appended} events appended since the last recorded digest "
                    "(run `dataengine audit digest` to record them)"
                )
            print(f"digest at {report.position}: {report.digest.hex()}")
        return 0
    first = damage[0]
    print(
        f"DAMAGED: first mismatch at position {first['position']}: {first['kind']}, "
        f"tree {first['tree_id']} version {first['version']} ({first['topic']}): "
        f"{first['detail']}"
    )
    for d in damage[1:20]:
        print(
            f"  also position {d['position']}: {d['kind']}, tree {d['tree_id']} version "
            f"{d['version']}: {d['detail']}"
        )
    if len(damage) > 20:
        print(f"  ... and {len(damage) - 20} more (use --json for all)")
    return 1


def _load(spec: str) -> Any:
    module, _, attribute = spec.partition(":")
    found = getattr(importlib.import_module(module), attribute)
    return found() if callable(found) and not hasattr(found, "rebuild") else found


def run_replay(args: argparse.Namespace) -> int:
    from projections.audit.history import replay

    folder = _folder(args)
    if folder is None:
        return _no_store(args)
    if not READ_MODELS:
        return fail(
            "no read models are registered yet (api/cli/audit.py READ_MODELS), "
            "so there is nothing to rebuild and compare"
        )
    models = [_load(spec) for spec in READ_MODELS]
    results = replay(
        folder, models, on_start=lambda name: print(f"rebuilding {name} ...", file=sys.stderr)
    )
    if args.json:
        _print_json(
            [
                {
                    "name": r.name,
                    "position": r.position,
                    "rows": r.rows,
                    "same": r.same,
                    "differences": r.differences,
                    "error": r.error,
                    "only_live": r.only_live,
                    "only_rebuilt": r.only_rebuilt,
                }
                for r in results
            ]
        )
    else:
        for r in results:
            verdict = "same" if r.same else r.error or f"{r.differences} rows differ"
            print(f"{r.name}: {r.rows} rows at position {r.position}: {verdict}")
            for row in r.only_live:
                print(f"  only live:    {row}")
            for row in r.only_rebuilt:
                print(f"  only rebuilt: {row}")
    return 0 if all(r.same for r in results) else 1
