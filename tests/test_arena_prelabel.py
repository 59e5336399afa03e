"""Several models pre-label the same prompts: the room is dealt round-robin, side by side."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
from pathlib import Path

import pytest

from api.bootstrap import load_config, open_app
from api.cli import main
from domain.model.actor import Actor
from training.prelabel import PrelabelOptions, Target
from training.prelabel_models import deal, prelabel_models
from training.tiny import init_tiny

OK = {"spam": 0.0, "lang_mismatch": 0.0}


def test_deal_round_robin() -> None:
    assert deal(3, 2, 2) == [2, 1]
    assert deal(4, 2, 2) == [2, 2]
    assert deal(10, 3, 1) == [1, 1, 1]
    assert deal(1, 2, 2) == [1, 0]
    assert deal(0, 2, 2) == [0, 0]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    return init_tiny(root / "a", seed=1), init_tiny(root / "b", seed=2)


def growing_store(folder: Path, prompts: int) -> list:
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(
        "[tree]\ngoal_tree_size = 4\nmin_goal_tree_size = 1\nmax_children_count = 3\n"
    )
    app = open_app(folder, load_config(folder))
    client, _ = app.register_client(name="people")
    people = [
        Actor(app.ensure_user(client_id=client, auth_method="local", username=f"p{i}"), client)
        for i in range(4)
    ]
    trees = []
    for i in range(prompts):
        tree = app.create_prompt(actor=people[0], text=f"prompt number {i}").id
        for p in people[1:]:
            app.submit_labels(actor=p, tree_id=tree, message_id=tree, labels=OK)
        app.activate_tree(tree_id=tree)
        trees.append(tree)
    app.close()
    return trees


def authors(folder: Path, tree) -> list[str]:
    app = open_app(folder, load_config(folder))
    try:
        found = app.get_tree(tree).messages.values()
        return sorted(m.model_name for m in found if m.synthetic)
    finally:
        app.close()


def test_two_models_share_each_prompts_room(tmp_path, models) -> None:
    folder = tmp_path / "data"
    (tree,) = growing_store(folder, 1)
    app = open_app(folder, load_config(folder))
    try:
        a, b = (str(m) for m in models)
        options = PrelabelOptions(n=2, max_new_tokens=6, seed=1)
        summaries = prelabel_models(app, [Target(tree, tree)], [a, b], options)
        assert [s.added for s in summaries] == [2, 1]  # room 3: a, b, a
        with pytest.raises(ValueError, match="each model once"):
            prelabel_models(app, [Target(tree, tree)], [a, a], options)
    finally:
        app.close()
    assert authors(folder, tree) == sorted([a, a, b])


def test_prelabel_cli_takes_several_models(tmp_path, models, capsys) -> None:
    folder = tmp_path / "data"
    trees = growing_store(folder, 2)
    a, b = (str(m) for m in models)
    args = ["prelabel", "--data", str(folder), "--n", "1", "--max-new-tokens", "6"]
    assert main([*args, "--model", a, "--model", b, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(s["model_name"], s["added"]) for s in out] == [(a, 2), (b, 2)]
    assert all(authors(folder, t) == sorted([a, b]) for t in trees)
    assert main([*args, "--model", a, "--model", a]) == 2
    assert "once" in capsys.readouterr().err
