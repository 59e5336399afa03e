"""The flywheel end to end on a simulated store with a tiny offline model (CPU, a few steps)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("trl")

from api.bootstrap import open_app  # noqa: E402
from api.cli import main  # noqa: E402
from api.flywheel import Flywheel, FlywheelError, FlywheelPlan  # noqa: E402
from api.storage.logdb import log_location  # noqa: E402
from domain.model.actor import Actor  # noqa: E402
from domain.model.config import TreeConfig  # noqa: E402
from domain.model.states import TreeState  # noqa: E402
from domain.service.simulator import run_simulation  # noqa: E402
from projections.log import SQLiteLog  # noqa: E402
from projections.runner import ProjectionRunner  # noqa: E402
from tests.store_helpers import fresh_store, module_store, use_store  # noqa: E402
from training.tiny import init_tiny  # noqa: E402


@pytest.fixture(scope="module")
def simulated(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[Path, str | None]:
    """The store's folder and, on the PostgreSQL pass, the URL of its log."""
    folder = tmp_path_factory.mktemp("store")
    with module_store(request) as url:
        fill(folder)
    return folder, url


@pytest.fixture
def store(simulated: tuple[Path, str | None], monkeypatch: pytest.MonkeyPatch) -> Path:
    folder, url = simulated
    use_store(monkeypatch, url)
    return folder


def fill(folder: Path) -> None:
    app = open_app(folder, TreeConfig(goal_tree_size=4, min_goal_tree_size=1))
    runner = ProjectionRunner(SQLiteLog(log_location(folder)), folder / "readmodel.sqlite")
    sim, _, _ = run_simulation(app, runner, trees=6, users=12, seed=3)
    assert sim.tree_states()["ready_for_export"] >= 6
    # Two accepted prompts waiting for replies: the new policy's pre-labelling targets.
    client, _ = app.register_client(name="people")
    people = iter(
        Actor(app.ensure_user(client_id=client, auth_method="local", username=f"p{i}"), client)
        for i in range(100)
    )
    for text in ("How do I sort a list in Python?", "What is the capital of France?"):
        tree_id = app.create_prompt(actor=next(people), text=text).id
        for _ in range(3):
            app.submit_labels(
                actor=next(people),
                tree_id=tree_id,
                message_id=tree_id,
                labels={"spam": 0.0, "lang_mismatch": 0.0, "quality": 0.8},
            )
        app.activate_tree(tree_id=tree_id)
        assert app.get_tree(tree_id).state is TreeState.GROWING
    runner.close()
    app.close()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_tiny(tmp_path_factory.mktemp("base") / "tiny")


def synthetic_replies(store: Path, model_name: str) -> int:
    app = open_app(store)
    try:
        runner = ProjectionRunner(SQLiteLog(log_location(store)), store / "readmodel.sqlite")
        runner.run_once()
        conn = runner.readmodel.reader()
        (count,) = conn.execute(
            "SELECT count(*) FROM messages WHERE model_name = ?", (model_name,)
        ).fetchone()
        runner.close()
        return count
    finally:
        app.close()


def test_one_turn_end_to_end_then_resume(
    store: Path, base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "turn1"
    args = [
        "flywheel",
        "--data",
        str(store),
        "--base-model",
        str(base),
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--set",
        "rlhf.num_generations=2",
        "--set",
        "rlhf.max_completion_length=8",
        "--prelabel",
        "2",
        "--quiet",
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    for line in (
        "rows sft",
        "rm pairwise accuracy",
        "rlhf reward",
        "registered",
        "pre-labelled replies",
        "rm validation accuracy",
        "held-out mean reward",
        "policy strength vs",
    ):
        assert line in table
    for step in ("sft", "rm", "rlhf"):
        for name in ("metrics.json", "curves.png", "dataset_manifest.json", "config.json"):
            assert (out / step / name).exists(), (step, name)
    state = json.loads((out / "flywheel.json").read_text())
    assert list(state["steps"]) == [
        "datasets",
        "sft",
        "rm",
        "rlhf",
        "register",
        "prelabel",
        "report",
    ]
    check_report(out, state["steps"]["report"]["summary"])
    manifest = json.loads((out / "datasets" / "manifest.json").read_text())
    assert state["steps"]["datasets"]["summary"]["log_position"] == manifest["log_position"]
    rm_metrics = json.loads((out / "rm" / "metrics.json").read_text())
    assert rm_metrics["base_model"] == str(out / "sft")

    # The registry knows the three models, with the dataset's position.
    assert main(["models", "show", "turn1-rlhf", "--data", str(store)]) == 0
    shown = capsys.readouterr().out
    assert str(out / "rlhf") in shown and str(manifest["log_position"]) in shown

    # `flywheel status` lists the turn with its report's figures.
    assert main(["flywheel", "status", "--data", str(store), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    report = state["steps"]["report"]["summary"]
    assert listed["policy"] == "turn1-rlhf" and listed["folder"] == str(out)
    assert listed["rm_accuracy"] == report["rm_validation"]["accuracy"]
    assert listed["held_out_gain"] == report["held_out_reward"]["gain"]
    assert main(["flywheel", "status", "--data", str(store)]) == 0
    assert "flywheel turns" in capsys.readouterr().out

    # The new policy pre-labelled: its replies are in the store under its registry name.
    added = state["steps"]["prelabel"]["summary"]["added"]
    assert added == 4  # 2 candidates on each of the 2 open prompts
    assert synthetic_replies(store, "turn1-rlhf") == added

    # A second run resumes: every step is done, nothing is trained or added again.
    mtime = (out / "sft" / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "sft" / "metrics.json").stat().st_mtime_ns == mtime
    assert synthetic_replies(store, "turn1-rlhf") == added

    # One step alone, forced: only the reward model is retrained.
    rm_mtime = (out / "rm" / "metrics.json").stat().st_mtime_ns
    assert main(args[:-3] + ["--only", "rm", "--force", "--quiet"]) == 0
    assert (out / "rm" / "metrics.json").stat().st_mtime_ns != rm_mtime
    assert (out / "sft" / "metrics.json").stat().st_mtime_ns == mtime


def check_report(out: Path, report: dict) -> None:
    """The report step's held-out figures and its picture."""
    png = out / "report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rm = report["rm_validation"]
    rm_metrics = json.loads((out / "rm" / "metrics.json").read_text())
    assert rm_metrics["own_options"]["val_min"] == 200  # the flywheel asks for 200 pairs
    assert rm["split"] == "validation" and rm["pairs"] + rm["skipped_too_long"] > 0
    assert 0.0 <= rm["accuracy"] <= 1.0
    rewards = report["held_out_reward"]
    assert rewards["prompts"] > 0
    for side in ("policy", "previous"):
        assert rewards[side]["scored"] + rewards[side]["too_long"] == rewards["prompts"]
    assert rewards["gain"] == pytest.approx(rewards["policy"]["mean"] - rewards["previous"]["mean"])
    # Nobody ranked the new policy's candidates yet: no strength, the turn is still listed.
    assert report["strength"]["policy"] is None
    assert [t["turn"] for t in report["turns"]] == [out.name]
    assert report["turns"][0]["rm_accuracy"] == rm["accuracy"]


def test_refusals_change_nothing(
    store: Path,
    base: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "turn"
    # A step whose inputs are missing.
    assert (
        main(
            [
                "flywheel",
                "--data",
                str(store),
                "--base-model",
                str(base),
                "--out",
                str(out),
                "--only",
                "rm",
            ]
        )
        != 0
    )
    assert "needs datasets, sft first" in capsys.readouterr().err
    # Unknown steps and malformed --set.
    assert (
        main(
            [
                "flywheel",
                "--data",
                str(store),
                "--base-model",
                str(base),
                "--out",
                str(out),
                "--only",
                "bake",
            ]
        )
        != 0
    )
    assert (
        main(
            [
                "flywheel",
                "--data",
                str(store),
                "--base-model",
                str(base),
                "--out",
                str(out),
                "--set",
                "learning_rate=1",
            ]
        )
        != 0
    )
    assert "STEP.KEY=VALUE" in capsys.readouterr().err
    # A folder that is not a flywheel turn is never written into.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FlywheelError, match="not empty"):
        Flywheel(FlywheelPlan(store=store, out=foreign, base_model=str(base)))
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    # No store there.
    fresh_store(request, monkeypatch)
    assert (
        main(
            [
                "flywheel",
                "--data",
                str(tmp_path / "nothing"),
                "--base-model",
                str(base),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        != 0
    )


def test_a_turn_belongs_to_one_base_model(store: Path, base: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    wheel = Flywheel(FlywheelPlan(store=store, out=out, base_model=str(base)))
    wheel.run(only=["datasets"])
    with pytest.raises(FlywheelError, match="base_model"):
        Flywheel(FlywheelPlan(store=store, out=out, base_model="another/model"))


def test_an_empty_store_gives_a_clear_error(base: Path, tmp_path: Path) -> None:
    store = tmp_path / "empty"
    open_app(store).close()
    with pytest.raises(FlywheelError, match="no training rows"):
        Flywheel(FlywheelPlan(store=store, out=tmp_path / "t", base_model=str(base))).run()
    assert not (tmp_path / "t" / "datasets").exists()
