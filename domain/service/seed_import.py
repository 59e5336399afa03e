"""Importing Open-Assistant's development seed data (``dataengine import oa-seed FILE``).

The whole file is read and checked first (domain.model.tree_seed.plan_seed): a malformed
file is refused whole, naming the offending item, and nothing is recorded. The trees are
then recorded in batches as the messages of a named importing user of a named importing
client. That client is registered disabled: it exists to say who wrote the messages and
cannot be used to call the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from domain.model.actor import Actor
from domain.model.api_client import client_id_for_key
from domain.model.errors import InvalidMessageError
from domain.model.tree_seed import SeedTree, plan_seed
from domain.service.application import DataEngine
from domain.service.oa_import import ImportReport, _add

SEED_AUTH_METHOD = "system"


def _key(client_name: str) -> str:
    return f"oa-seed-import:{client_name}"  # the same client (id) on every import


def seed_importer(app: DataEngine, *, client_name: str, username: str) -> Actor:
    """The importing client (registered once, disabled) and its user."""
    client_id, _ = app.register_client(
        name=client_name,
        api_key=_key(client_name),
        frontend_type="oa-seed-import",
        description="Open-Assistant seed data importer",
    )
    app.change_client_access(client_id, enabled=False)
    user_id = app.ensure_user(
        client_id=client_id,
        auth_method=SEED_AUTH_METHOD,
        username=username,
        display_name=username,
    )
    return Actor(user_id, client_id)


def read_seed_file(path: str | Path, client_name: str) -> list[SeedTree]:
    """The file's trees as ``client_name`` imports them; InvalidMessageError (naming the
    file and the item) if malformed. Reads only: nothing is recorded yet."""
    try:
        items = msgspec.json.decode(Path(path).read_bytes())
    except msgspec.DecodeError as e:
        raise InvalidMessageError(f"{path}: not JSON: {e}") from None
    try:
        return plan_seed(items, client_id_for_key(_key(client_name)))
    except InvalidMessageError as e:
        raise InvalidMessageError(f"{path}: {e.message}") from None


def import_seed(
    app: DataEngine,
    trees: list[SeedTree],
    actor: Actor,
    *,
    batch_size: int = 100,
    progress: Any = None,
) -> ImportReport:
    report = ImportReport()
    for start in range(0, len(trees), batch_size):
        batch = trees[start : start + batch_size]
        _add(report, app.import_seed_batch(batch, actor=actor))
        if progress is not None:
            progress.update(len(batch))
    return report
