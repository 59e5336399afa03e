from __future__ import annotations

import argparse
from uuid import UUID

from api.bootstrap import load_config, open_app
from api.cli.projections import run_rebuild, show_status
from api.cli.simulate import simulate
from api.storage.logdb import log_location
from domain.model.config import TreeConfig
from domain.service.simulator import run_simulation
from projections.log import SQLiteLog
from projections.runner import ProjectionRunner
from tests.store_helpers import fresh_store


def test_simulation_drives_trees_to_ready_for_export(tmp_path):
    config = TreeConfig(goal_tree_size=4, min_goal_tree_size=1)
    app = open_app(tmp_path, config)
    runner = ProjectionRunner(SQLiteLog(log_location(tmp_path)), tmp_path / "rm.sqlite")
    sim, stats, _ = run_simulation(app, runner, trees=4, users=12, seed=11)
    states = sim.tree_states()
    assert states["ready_for_export"] >= 4
    assert stats.by_type.get("rank_assistant_replies", 0) > 0 and stats.skipped > 0
    conn = runner.readmodel.reader()
    # Every ready tree was scored: its ranked parents' accepted replies carry a rank.
    for (tree_id,) in conn.execute("SELECT tree_id FROM trees WHERE state = 'ready_for_export'"):
        tree = app.get_tree(UUID(tree_id))
        assert tree.state.value == "ready_for_export"
        for parent in tree.messages.values():
            if parent.rankings:
                ranks = {
                    tree.messages[c].rank for c in parent.children if tree.messages[c].review_result
                }
                assert None not in ranks
    # Spam gets rejected by reviewers.
    rejected = {
        m for (m,) in conn.execute("SELECT message_id FROM messages WHERE review_result = 0")
    }
    assert rejected and rejected <= sim.spam | set(sim.quality)
    runner.close()


def test_same_seed_same_run(tmp_path, request, monkeypatch):
    outcomes = []
    for run in ("one", "two"):
        folder = tmp_path / run
        fresh_store(request, monkeypatch)  # each run on a log of its own, on either store
        app = open_app(folder, TreeConfig(goal_tree_size=3, min_goal_tree_size=1))
        runner = ProjectionRunner(SQLiteLog(log_location(folder)), folder / "rm.sqlite")
        sim, stats, _ = run_simulation(app, runner, trees=2, users=8, seed=5)
        outcomes.append((stats.steps, stats.by_type, sim.tree_states()))
        runner.close()
    assert outcomes[0] == outcomes[1]


def test_cli_simulate_status_rebuild(tmp_path, capsys):
    data = str(tmp_path)
    args = argparse.Namespace(data=data, trees=2, users=8, seed=1, lang="en", goal_tree_size=3)
    assert simulate(args) == 0
    out = capsys.readouterr().out
    assert "ready_for_export" in out
    assert show_status(argparse.Namespace(data=data)) == 0
    head = SQLiteLog(log_location(tmp_path)).head()
    assert f"log position: {head}" in capsys.readouterr().out
    assert run_rebuild(argparse.Namespace(data=data, batch_size=100)) == 0
    assert f"from {head} events" in capsys.readouterr().out
    show_status(argparse.Namespace(data=data))
    assert "behind by 0" in capsys.readouterr().out
    assert load_config(tmp_path).goal_tree_size == 12  # the override did not persist
