"""`dataengine audit verify --blobs`: re-hash the image files the log names.

The chain check (projections.audit.verify) proves the log; this proves the bytes behind
its image hashes (projections.audit.blobs). A missing or altered file is named with the
image, message and tree that carry it, and the command exits non-zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from api.storage.blobs import blob_store
from api.storage.logdb import connect_log, log_location
from projections.audit.blobs import verify_blobs


def check_blobs(folder: Path, as_json: bool) -> int:
    report = verify_blobs(connect_log(log_location(folder)), blob_store(folder))
    damage: list[dict[str, Any]] = [
        {
            "sha256": d.sha256,
            "kind": d.kind,
            "image_id": d.image_id,
            "message_id": d.message_id,
            "tree_id": d.tree_id,
            "position": d.position,
        }
        for d in report.damage
    ]
    if as_json:
        print(
            json.dumps(
                {
                    "blobs_intact": report.intact,
                    "images": report.images,
                    "blobs": report.blobs,
                    "blob_damage": damage,
                }
            )
        )
    elif report.intact:
        print(f"blobs intact: {report.blobs} files behind {report.images} image references")
    else:
        for d in damage:
            print(
                f"BLOB {d['kind'].upper()}: {d['sha256']} (image {d['image_id']} of message "
                f"{d['message_id']}, tree {d['tree_id']}, position {d['position']})"
            )
    return 0 if report.intact else 1
