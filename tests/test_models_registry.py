"""The models registry: the TrainedModel aggregate, its read model, resolve, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.cli import main
from api.storage.codec import MsgspecMapper
from domain.model.actor import Actor
from domain.model.errors import DomainError, ErrorCode
from domain.model.trained_model import TrainedModel, model_id_for
from domain.service.application import DataEngine
from projections.log import AppLog
from projections.models import registry
from projections.runner import ProjectionRunner
from training.registry import headline_metrics, read_manifest, resolve

FACTS = {
    "name": "sft-1",
    "path": "/models/sft-1",
    "kind": "sft",
    "base_model": "tiny-base",
    "dataset_position": 42,
    "dataset_digest": "ab" * 32,
    "metrics": {"train_loss": 1.5},
}


def code_of(info: pytest.ExceptionInfo) -> ErrorCode:
    return info.value.error_code


def test_register_is_idempotent_and_refuses_conflicts():
    app = DataEngine()
    actor = Actor(model_id_for("someone"), None)
    first = app.register_model(**FACTS, actor=actor)
    assert first.recorded and first.id == model_id_for("sft-1")
    again = app.register_model(**{**FACTS, "metrics": {"train_loss": 1.5}})  # same facts
    assert not again.recorded and again.id == first.id
    assert len(list(app.events.get(first.id))) == 1
    for change in (
        {"path": "/elsewhere"},
        {"metrics": {"train_loss": 1.4}},
        {"kind": "dpo"},
        {"dataset_position": None},
    ):
        with pytest.raises(DomainError) as info:
            app.register_model(**{**FACTS, **change})
        assert code_of(info) is ErrorCode.MODEL_ALREADY_REGISTERED
        assert info.value.http_status == 409 and next(iter(change)) in info.value.message
    assert len(list(app.events.get(first.id))) == 1

    model = app.get_model("sft-1")
    assert model.current_facts() == {**FACTS, "metrics": {"train_loss": 1.5}}
    shown = model.as_dict()
    assert shown["version"] == 1 and shown["registered_by"]["user_id"] == str(actor.user_id)
    with pytest.raises(DomainError) as info:
        app.get_model("sft-2")
    assert code_of(info) is ErrorCode.MODEL_NOT_FOUND and "sft-2" in info.value.message


@pytest.mark.parametrize(
    "change",
    [
        {"name": ""},
        {"name": " sft"},
        {"name": "sft 1"},
        {"name": "sft\t1"},
        {"name": "sft\u200b1"},
        {"name": "x" * 129},
        {"name": None},
        {"kind": "ppo"},
        {"path": "  "},
        {"metrics": {"loss": float("nan")}},
        {"metrics": {"loss": "low"}},
        {"metrics": {"ok": True}},
        {"dataset_position": -1},
        {"dataset_digest": ""},
        {"base_model": ""},
    ],
)
def test_bad_registrations_get_a_typed_error(change):
    app = DataEngine()
    with pytest.raises(DomainError) as info:
        app.register_model(**{**FACTS, **change})
    assert code_of(info) is ErrorCode.INVALID_MODEL
    assert app.recorder.max_notification_id() in (None, 0)


def test_names_up_to_128_characters_are_fine():
    app = DataEngine()
    assert app.register_model(**{**FACTS, "name": "org/" + "m" * 124}).recorded


def test_the_event_round_trips_through_the_codec():
    mapper = MsgspecMapper(transcoder=None)
    model = TrainedModel.register(actor=Actor(model_id_for("a"), model_id_for("b")), **FACTS)
    (event,) = model.collect_events()
    stored = mapper.to_stored_event(event)
    assert stored.topic == "domain.trained_model:TrainedModel.Registered"
    decoded = mapper.to_domain_event(stored)
    assert decoded == event and type(decoded) is type(event)
    rebuilt = decoded.mutate(None)
    assert rebuilt.current_facts() == model.current_facts() and rebuilt.id == model.id


def test_resolve_by_name_else_the_given_string():
    app = DataEngine()
    app.register_model(**FACTS)
    named = resolve(app, "sft-1")
    assert (named.model_name, named.path) == ("sft-1", "/models/sft-1")
    assert named.registered is not None and named.registered.kind == "sft"
    for given in ("org/some-model", "/tmp/a folder/with spaces"):
        other = resolve(app, given)
        assert (other.model_name, other.path, other.registered) == (given, given, None)
    with pytest.raises(DomainError) as info:
        resolve(app, " ")
    assert code_of(info) is ErrorCode.INVALID_MODEL


def test_projection_lists_models_with_their_statistics(tmp_path):
    app = DataEngine()
    app.register_model(**FACTS)
    app.register_model(name="base", path="org/base", kind="external")
    runner = ProjectionRunner(AppLog(app), tmp_path / "rm.sqlite")
    runner.run_once()
    rows = registry(runner.readmodel.reader())
    assert [r["name"] for r in rows] == ["sft-1", "base"]
    first = rows[0]
    assert first["metrics"] == {"train_loss": 1.5} and first["dataset_position"] == 42
    assert first["base_model"] == "tiny-base" and first["model_id"] == str(model_id_for("sft-1"))
    assert [r["log_position"] for r in rows] == [1, 2]
    assert first["replies"] is None and first["win_rate"] is None  # no replies yet
    runner.close()


def test_headline_metrics_and_manifest(tmp_path):
    metrics = {
        "train_loss": 0.5,
        "steps": 30,
        "ok": True,
        "note": "x",
        "pairwise_accuracy": {"value": 0.75, "pairs": 40},
        "eval": {"loss": 0.7, "curve": [1, 2]},
        "log_history": [{"loss": 3.0}],
        "trainer_config": {"learning_rate": 0.001},
        "bad": float("inf"),
    }
    headline = headline_metrics(metrics)
    assert headline == {
        "pairwise_accuracy": 0.75,
        "train_loss": 0.5,
        "steps": 30.0,
        "eval.loss": 0.7,
    }
    assert list(headline) == ["pairwise_accuracy", "train_loss", "steps", "eval.loss"]
    assert list(headline_metrics(metrics, limit=2)) == ["pairwise_accuracy", "train_loss"]
    (tmp_path / "manifest.json").write_text(
        json.dumps({"log_position": 7, "audit": {"digest": "cd" * 32}})
    )
    assert read_manifest(tmp_path) == (7, "cd" * 32)
    (tmp_path / "manifest.json").write_text(json.dumps({"rows": {}}))
    with pytest.raises(DomainError) as info:
        read_manifest(tmp_path)
    assert code_of(info) is ErrorCode.INVALID_MODEL


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_register_show_list(tmp_path, capsys):
    data = str(tmp_path / "data")
    weights = tmp_path / "run" / "model"
    weights.mkdir(parents=True)
    dataset = tmp_path / "ds"
    dataset.mkdir()
    (dataset / "manifest.json").write_text(
        json.dumps({"format": 1, "log_position": 12, "audit": {"scheme": "s", "digest": "ef" * 32}})
    )
    (tmp_path / "metrics.json").write_text(
        json.dumps({"train_loss": 0.25, "log_history": [{"loss": 1.0}], "eval": {"accuracy": 0.8}})
    )
    register = [
        "models",
        "register",
        "--data",
        data,
        "--name",
        "rm-1",
        "--path",
        str(weights),
        "--kind",
        "rm",
        "--base-model",
        "sft-1",
        "--dataset",
        str(dataset),
        "--metrics",
        str(tmp_path / "metrics.json"),
    ]
    code, out, _ = run(capsys, *register)
    assert code == 0 and "registered rm-1 (rm) at log position 1" in out
    code, out, _ = run(capsys, *register)
    assert code == 0 and "nothing recorded" in out

    code, out, _ = run(capsys, "models", "show", "rm-1", "--data", data)
    shown = json.loads(out)
    assert code == 0 and shown["path"] == str(weights.resolve())
    assert shown["dataset_position"] == 12 and shown["dataset_digest"] == "ef" * 32
    assert shown["metrics"] == {"train_loss": 0.25, "eval.accuracy": 0.8}

    code, out, _ = run(capsys, "models", "list", "--data", data)
    assert code == 0 and out.splitlines()[0].split()[:2] == ["name", "kind"]
    assert out.splitlines()[1].split()[:5] == ["rm-1", "rm", "sft-1", "12", "1"]
    code, out, _ = run(capsys, "models", "list", "--data", data, "--json")
    (row,) = json.loads(out)
    assert row["log_position"] == 1 and row["registered_at"] > 0


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["models", "show", "nope"], 7000, "'nope' is not registered"),
        (["models", "show", "a b"], 7002, "whitespace"),
        (["models", "register", "--name", "m", "--path", "org/m", "--kind", "ppo"], 7002, "kind"),
        (
            ["models", "register", "--name", "m", "--path", "/no/such/dir", "--kind", "sft"],
            7002,
            "no model folder",
        ),
        (
            [
                "models",
                "register",
                "--name",
                "m",
                "--path",
                "org/m",
                "--kind",
                "base",
                "--dataset",
                "/no/such/ds",
            ],
            7002,
            "no dataset manifest",
        ),
        (
            ["models", "register", "--name", "first", "--path", "org/other", "--kind", "base"],
            7001,
            "already registered",
        ),
    ],
)
def test_cli_errors_exit_2_with_the_code(tmp_path, capsys, argv, code, message):
    data = str(tmp_path / "data")
    assert (
        run(
            capsys,
            "models",
            "register",
            "--data",
            data,
            "--name",
            "first",
            "--path",
            "org/first",
            "--kind",
            "base",
        )[0]
        == 0
    )
    exit_code, out, err = run(capsys, *argv, "--data", data)
    assert exit_code == 2 and out == ""
    assert f"(error_code {code})" in err and message in err


def test_cli_without_a_store(tmp_path, capsys):
    for argv in (["models", "list"], ["models", "show", "m"]):
        code, _, err = run(capsys, *argv, "--data", str(tmp_path / "none"))
        assert code == 2 and "no event store" in err
    assert not (tmp_path / "none" / "events.sqlite").exists()  # looking creates no store


def test_resolve_reads_only_the_aggregate(tmp_path):
    """No read model is needed: a fresh app on the same store resolves the name."""
    from api.bootstrap import open_app

    app = open_app(tmp_path)
    app.register_model(name="m", path="org/m", kind="external")
    app.close()
    other = open_app(tmp_path)
    assert resolve(other, "m").path == "org/m"
    other.close()
    assert not Path(tmp_path / "readmodel.sqlite").exists()
