"""`dataengine import oa-seed FILE`: OA's development seed format, recorded authoritatively
as a named importer's messages (depth 10 and assistant-under-assistant taken, as in OA's
realistic_seed_data.json), idempotent, a malformed file refused whole with its item named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.bootstrap import load_config, open_app
from api.cli import main
from domain.model.api_client import client_id_for_key
from domain.model.states import TreeState
from domain.model.tree_seed import SEED_REVIEW_COUNT, seed_message_id

CLIENT = client_id_for_key("oa-seed-import:oa-seed import")


def message(uid: str, parent: str | None, role: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "task_message_id": f"t-{uid}",
        "user_message_id": uid,
        "parent_message_id": parent,
        "text": text,
        "role": role,
        **extra,
    }


def seed_file() -> list[dict[str, Any]]:
    """Tree a: eleven messages deep (depth 10) with an assistant reply to an assistant
    message; tree b: starts in ranking with two replies; tree c: a lone German prompt."""
    items = [message("a0", None, "prompter", "Teach me horseshoes?")]
    roles = ["assistant", "prompter", "assistant", "assistant"] + ["prompter", "assistant"] * 3
    for depth, role in enumerate(roles, start=1):
        items.append(message(f"a{depth}", f"a{depth - 1}", role, f"turn {depth}"))
    items.append(message("b0", None, "prompter", "Feed squirrels?", tree_state="ranking"))
    items.append(message("b1", "b0", "assistant", "Nuts."))
    items.append(message("b2", "b0", "assistant", "Seeds."))
    items.append(message("c0", None, "prompter", "Wie spät ist es?", lang="de"))
    return items


def write(tmp_path: Path, items: Any, name: str = "seed.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(items))
    return path


def head(data: Path) -> int:
    app = open_app(data, load_config(data))
    try:
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


def test_the_seed_loads_whole_and_again_adds_nothing(tmp_path: Path, capsys: Any) -> None:
    data, items = tmp_path / "data", seed_file()
    path = write(tmp_path, items)
    assert main(["import", "oa-seed", str(path), "--data", str(data)]) == 0
    assert "3 trees imported (15 messages in the file)" in capsys.readouterr().out
    app = open_app(data, load_config(data))
    try:
        deep = app.get_tree(seed_message_id(CLIENT, "a0"))
        assert len(deep.messages) == 11 and max(m.depth for m in deep.messages.values()) == 10
        a3, a4 = (deep.messages[seed_message_id(CLIENT, f"a{i}")] for i in (3, 4))
        assert a3.role == a4.role == "assistant" and a4.parent_id == a3.id
        assert deep.state is TreeState.GROWING and deep.origin == "oa_seed"
        for m in deep.messages.values():
            assert m.review_result is True and m.review_count == SEED_REVIEW_COUNT
            assert m.client_id == CLIENT and m.frontend_message_id.startswith("a")
        assert {m.user_id for m in deep.messages.values()} == {deep.messages[deep.id].user_id}
        importer = app.find_user(deep.messages[deep.id].user_id)
        assert importer is not None and importer.username == "oa-seed"
        client = app.find_client(CLIENT)
        assert client is not None and client.enabled is False  # no key calls the API as it
        assert app.get_tree(seed_message_id(CLIENT, "b0")).state is TreeState.RANKING
        assert app.get_tree(seed_message_id(CLIENT, "c0")).lang == "de"
        position = app.recorder.max_notification_id()
    finally:
        app.close()
    assert main(["import", "oa-seed", str(path), "--data", str(data)]) == 0
    assert "0 trees imported" in capsys.readouterr().out and head(data) == position


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda items: items[3].pop("text"), "item 3: text"),
        (lambda items: items.insert(2, message("x1", "x0", "prompter", "orphan")), "item 2"),
        (lambda items: items[12].update(role="system"), "item 12: role"),
        (lambda items: items[1].update(tree_state="growing"), "item 1: tree_state"),
        (lambda items: items[11].update(tree_state="done"), "item 11: unknown tree_state"),
        (lambda items: items.append(items[0]), "item 15: user_message_id 'a0' appears twice"),
    ],
)
def test_a_malformed_file_is_refused_whole(tmp_path: Path, capsys: Any, change, named) -> None:
    data, items = tmp_path / "data", seed_file()
    change(items)
    assert main(["import", "oa-seed", str(write(tmp_path, items)), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert named in err and "nothing was imported" in err
    assert head(data) == 0  # not even the importing client or user


def test_not_json_is_refused(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "seed.json"
    path.write_text("[{")
    assert main(["import", "oa-seed", str(path), "--data", str(tmp_path / "d")]) == 2
    assert "not JSON" in capsys.readouterr().err
