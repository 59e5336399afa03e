"""`dataengine audit keygen` and the signature half of `audit verify --public-key`.

An operator creates the key once (the private key stays in the data folder, the public key
is printed to publish); the live audit chain (projections.audit.live) then signs the
checkpoint at the end of every batch it records. ``verify --public-key`` checks every
stored signature against the key and every signed digest against the checkpoint the log
was just verified against, so a rewrite of the log that also rewrote ``audit.sqlite``
needs the private key to go unnoticed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from api.cli import fail


def run_keygen(args: argparse.Namespace) -> int:
    from projections.audit.signing import KEY_FILE, keygen

    folder = Path(args.data)
    try:
        public = keygen(folder, force=args.force)
    except FileExistsError as e:
        return fail(str(e))
    except OSError as e:
        return fail(f"cannot write {folder / KEY_FILE}: {e.strerror or e}")
    print(public)
    print(
        f"(private key in {folder / KEY_FILE}; publish the public key above. A server "
        "started on this folder signs its audit checkpoints from now on)",
        file=sys.stderr,
    )
    return 0


def check_signatures(args: argparse.Namespace, store: Any, report: Any) -> int:
    """0 when every signature holds and matches the verified chain, 1 otherwise."""
    from projections.audit.signing import Signatures, check_signature, parse_public_key

    try:
        key = parse_public_key(args.public_key)
    except (ValueError, OSError) as e:
        return fail(f"bad --public-key: {e}")
    signed = Signatures(store.conn).rows()
    if not signed:
        return fail("no signed checkpoints in this store (was `audit keygen` run?)", 1)
    checkpoints = dict(store.checkpoints())
    bad: list[str] = []
    for position, digest, signature in signed:
        if not check_signature(key, position, digest, signature):
            bad.append(f"position {position}: the signature does not hold for this key")
        elif checkpoints.get(position) != digest:
            bad.append(f"position {position}: the signed digest is not the chain's")
        elif position > report.position:
            bad.append(f"position {position}: signed, but the log ends at {report.position}")
    first_damage = report.damage[0].position if report.damage else None
    last = signed[-1][0]
    for line in bad:
        print(f"SIGNATURE: {line}", file=sys.stderr)
    if first_damage is not None and first_damage <= last:
        print(
            f"the log changed at or before position {first_damage}, which a signed "
            f"checkpoint (position {last}) covers",
            file=sys.stderr,
        )
    if bad:
        return 1
    print(
        f"signatures: {len(signed)} signed checkpoints hold for this key; the last at "
        f"position {last} ({max(0, report.position - last)} events after it)",
        file=sys.stderr,
    )
    return 0
