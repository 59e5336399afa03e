"""`datasets build --sources`: rows restricted to the trees of named import sources (an
imported tree's origin) or `local` (trees written here), the sources listed in the manifest,
the pre-cut fast path stepping aside, and a bad list refused with nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.bootstrap import open_app
from api.cli import main
from domain.service.oa_import import import_trees
from projections.datasets.build import DatasetOptionsError
from projections.datasets.build import build as build_datasets
from projections.datasets.rows import BuildOptions
from tests.test_datasets import shaped_tree

PAIRS = [{"prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(3)]
OTHER = [{"prompt": f"R{i}", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(2)]


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def data(tmp_path: Path) -> str:
    """One tree written here (an OA export without an origin) and two imported sources."""
    folder = tmp_path / "data"
    report = import_trees(open_app(folder), [shaped_tree()])
    assert report.imported == 1 and not report.failed
    for name, rows in (("hf", PAIRS), ("other", OTHER)):
        path = write_jsonl(rows, tmp_path / f"{name}.jsonl")
        assert main(["import", "data", str(path), "--data", str(folder), "--source", name]) == 0
    return str(folder)


def build(tmp_path: Path, data: str, name: str, *extra: str) -> Path:
    out = tmp_path / name
    args = ["datasets", "build", "--out", str(out), "--data", data, "--val-fraction", "0"]
    assert main([*args, "--kinds", "rm", *extra]) == 0
    return out


def prompts(out: Path) -> list[str]:
    lines = (out / "rm" / "train.jsonl").read_text().splitlines()
    return sorted({json.loads(line)["prompt"][-1]["content"] for line in lines})


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def test_sources_restrict_the_rows_to_the_named_sources(tmp_path: Path, data: str) -> None:
    everything = build(tmp_path, data, "all")
    assert prompts(everything) == ["P0", "P1", "Q0", "Q1", "Q2", "R0", "R1"]
    assert "sources" not in manifest(everything)["options"]  # default manifest unchanged

    hf = build(tmp_path, data, "hf", "--sources", "hf")
    assert prompts(hf) == ["Q0", "Q1", "Q2"]
    assert manifest(hf)["options"]["sources"] == ["hf"]
    assert manifest(hf)["ready_trees"] == 3

    local = build(tmp_path, data, "local", "--sources", "local")
    assert prompts(local) == ["P0", "P1"]

    both = build(tmp_path, data, "both", "--sources", "hf, local")
    assert prompts(both) == ["P0", "P1", "Q0", "Q1", "Q2"]
    assert manifest(both)["options"]["sources"] == ["hf", "local"]

    assert prompts(build(tmp_path, data, "none", "--sources", "nowhere")) == []


def test_the_precut_rows_are_not_used_for_a_sources_build(tmp_path: Path, data: str) -> None:
    """The training projection keeps no origin: a sources build replays the log."""
    options = BuildOptions(kinds=("rm",), val_fraction=0.0, sources=("hf",))
    assert not options.default_rows
    with pytest.raises(DatasetOptionsError, match="--sources"):
        build_datasets(Path(data), tmp_path / "x", options, source="projection")
    assert build_datasets(Path(data), tmp_path / "auto", options).source == "replay"


@pytest.mark.parametrize("bad", ["", " , "])
def test_an_empty_sources_list_is_refused_with_nothing_written(
    tmp_path: Path, data: str, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bad"
    args = ["datasets", "build", "--out", str(out), "--data", data, "--sources", bad]
    assert main(args) != 0
    assert "--sources" in capsys.readouterr().err
    assert not (out / "manifest.json").exists()


def test_imported_rankings_are_no_persons_ranking(tmp_path: Path, data: str) -> None:
    """Pairs arrive as the consensus order (RanksImported), not as a user's ranking: the
    rankers' agreement and the arena's voters hold nothing of them (README, import section)."""
    from projections.log import AppLog
    from projections.runner import ProjectionRunner

    runner = ProjectionRunner(AppLog(open_app(Path(data))), tmp_path / "rm.sqlite")
    runner.catch_up(runner.log.head())
    conn = runner.readmodel.reader()
    ranked = conn.execute("SELECT count(*) FROM messages WHERE rank IS NOT NULL").fetchone()[0]
    assert ranked >= 2 * len(PAIRS + OTHER)  # the imported orders did reach the read models
    for table in ("agreement_rankings", "ranking_agreement", "arena_voters", "arena_outcomes"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
