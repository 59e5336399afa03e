"""One turn of the data flywheel: datasets → SFT → RM → RLHF → register (→ pre-label) → report.

This is a use case that composes the other layers (the dataset builder from projections,
the trainers from training, the registry through the DataEngine service), so it lives at
the edge rather than in training/, which only consumes dataset folders.

Everything a turn produces goes under one folder::

    OUT/flywheel.json      what was asked and which steps finished, with their summaries
    OUT/datasets/          `datasets build` output at the log position of this turn
    OUT/sft/ OUT/rm/ OUT/rlhf/   training runs (model, tokenizer, metrics.json, curves.png)
    OUT/report.png         the report step's panels (api.flywheel_report, api.flywheel_plot)

A step counts as done when its output is complete: the builder's manifest.json, a run's
metrics.json (runs are published by an atomic rename, so a crash never leaves one behind),
or a mark in flywheel.json for register, prelabel and report. A re-run therefore resumes after the
last finished step; `only` runs chosen steps alone (their inputs must exist) and `force`
redoes them. A folder started for another base model or store is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api.flywheel_report import RM_VAL_MIN
from domain.model.errors import DomainError, ErrorCode

STEPS = ("datasets", "sft", "rm", "rlhf", "register", "prelabel", "report")
TRAINING_STEPS = ("sft", "rm", "rlhf")
STATE_FILE = "flywheel.json"


class FlywheelError(DomainError):
    error_code = ErrorCode.VALIDATION_ERROR
    http_status = 422


@dataclass
class FlywheelPlan:
    store: Path  # the DataEngine data folder
    out: Path
    base_model: str
    name: str | None = None  # registry prefix; default: the out folder's name
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per training step
    max_steps: int | None = None  # for every training step, over the options
    lang: str | None = None
    prelabel_n: int = 0  # candidates per prompt written by the new policy; 0 skips the step
    prelabel_limit: int | None = None
    prelabel_max_new_tokens: int = 128
    lora: str | None = None  # a `--lora` spec for every training step (merged: see _train)
    # SFT may take a model-written reply people ranked best (plain builds leave it out).
    sft_model_replies: bool = True
    previous: Path | None = None  # the turn to count new rows against (default: the latest)

    @property
    def prefix(self) -> str:
        return self.name or self.out.resolve().name

    def model_name(self, step: str) -> str:
        return f"{self.prefix}-{step}"

    def identity(self) -> dict[str, Any]:
        return {
            "base_model": self.base_model,
            "store": str(self.store.resolve()),
            "name": self.prefix,
        }

    def training_options(self, step: str) -> dict[str, Any]:
        options = dict(self.options.get(step, {}))
        if self.max_steps is not None:
            options["max_steps"] = self.max_steps
        if step == "rm":  # a validation set big enough to mean something (api.flywheel_report)
            options.setdefault("val_min", RM_VAL_MIN)
        return options


Reporter = Callable[[str], Any]


class Flywheel:
    def __init__(self, plan: FlywheelPlan, report: Reporter = print, progress: bool = True):
        self.plan = plan
        self.report = report
        self.progress = progress
        self.out = plan.out
        self.state = self._load_state()

    # ------------------------------------------------------------------ state
    def _load_state(self) -> dict[str, Any]:
        path = self.out / STATE_FILE
        if not path.exists():
            if self.out.exists() and any(self.out.iterdir()):
                raise FlywheelError(
                    f"{self.out} is not empty and holds no {STATE_FILE}; pick another --out"
                )
            return {**self.plan.identity(), "steps": {}}
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise FlywheelError(
                f"{path} is damaged ({e}); remove it or pick another --out"
            ) from None
        for key, value in self.plan.identity().items():
            if state.get(key) != value:
                raise FlywheelError(
                    f"{self.out} holds a turn with {key} {state.get(key)!r}, not "
                    f"{value!r}; pick another --out or use --restart"
                )
        return state

    def _save_state(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, default=str) + "\n")
        os.replace(tmp, self.out / STATE_FILE)  # never a half-written state file

    def _mark(self, step: str, summary: dict[str, Any]) -> None:
        self.state["steps"][step] = {
            "finished_at": datetime.now(UTC).isoformat(),
            "summary": summary,
        }
        self._save_state()

    def done(self, step: str) -> bool:
        if step == "datasets":
            return (self.out / "datasets" / "manifest.json").exists()
        if step in TRAINING_STEPS:
            return (self.out / step / "metrics.json").exists()
        return step in self.state["steps"]

    # ------------------------------------------------------------------ running
    def run(self, only: Sequence[str] | None = None, force: bool = False) -> dict[str, Any]:
        unknown = sorted(set(only or ()) - set(STEPS))
        if unknown:
            raise FlywheelError(f"unknown flywheel steps {unknown}; choose from {', '.join(STEPS)}")
        steps = [s for s in STEPS if (s in only if only else True)]
        if not only and self.plan.prelabel_n <= 0:
            steps.remove("prelabel")
        self._save_state()
        for step in steps:
            if self.done(step) and not force:
                self.report(f"flywheel: {step} already done, skipped")
                continue
            self._check_inputs(step)
            self.report(f"flywheel: {step} ...")
            summary = getattr(self, f"_step_{step}")()
            self._mark(step, summary)
        return self.summary()

    def _check_inputs(self, step: str) -> None:
        needs = {
            "sft": ["datasets"],
            "rm": ["datasets", "sft"],
            "rlhf": ["datasets", "sft", "rm"],
            "register": ["datasets", "sft", "rm", "rlhf"],
            "prelabel": ["register"],
            "report": ["datasets", "sft", "rm", "rlhf", "register"],
        }
        missing = [n for n in needs.get(step, []) if not self.done(n)]
        if missing:
            raise FlywheelError(
                f"step {step} needs {', '.join(missing)} first "
                f"(run the flywheel without --only, or those steps)"
            )

    def _step_datasets(self) -> dict[str, Any]:
        from api.flywheel_turns import new_rows, previous_turn
        from projections.datasets.build import build
        from projections.datasets.rows import BuildOptions
        from projections.datasets.votes import vote_rows_at

        options = BuildOptions(lang=self.plan.lang, sft_model_replies=self.plan.sft_model_replies)
        manifest = build(self.plan.store, self.out / "datasets", options)
        if not manifest["rows"]["sft"]["train"]:
            shutil.rmtree(self.out / "datasets")  # not done: the next run builds again
            raise FlywheelError(
                f"no training rows at log position {manifest['log_position']}: "
                f"{manifest['ready_trees']} ready_for_export trees"
                + (f" in {self.plan.lang}" if self.plan.lang else "")
            )
        previous = self.plan.previous or previous_turn(self.plan.store, self.out)
        return {
            "log_position": manifest["log_position"],
            "ready_trees": manifest["ready_trees"],
            "rows": manifest["rows"],
            "sft_model_replies": self.plan.sft_model_replies,
            # rows holding a model-written reply people ranked, per kind and per model
            "from_votes": vote_rows_at(self.plan.store, manifest["log_position"], options),
            "previous_turn": str(previous) if previous else None,
            "new_rows": new_rows(manifest["rows"], previous),
        }

    def _train(self, kind: str, model: str, **models: str) -> dict[str, Any]:
        from training.runs import train

        result = train(
            kind,
            data=self.out / "datasets",
            model=model,
            out=self.out / kind,
            options=self.plan.training_options(kind),
            progress=self.progress,
            resume="auto",  # a step interrupted mid-training continues from its checkpoint
            lora=self._lora(),
            replace_registered=True,  # this turn's own models (registered by its register step)
            **models,
        )
        return {
            k: result.metrics.get(k)
            for k in (
                "global_step",
                "train_loss",
                "final_loss",
                "pairwise_accuracy",
                "initial_reward",
                "final_reward",
                "final_kl",
            )
            if k in result.metrics
        }

    def _lora(self) -> str | None:
        """The next step loads this one's folder as a full model: adapters are merged."""
        if self.plan.lora is None:
            return None
        return f"{self.plan.lora},merge=true" if self.plan.lora else "merge=true"

    def _step_sft(self) -> dict[str, Any]:
        from training.registry import resolve

        app = self._app()
        try:
            base = resolve(app, self.plan.base_model).path  # a registered name or a folder/hub id
        finally:
            app.close()
        return self._train("sft", base)

    def _step_rm(self) -> dict[str, Any]:
        # The reward model starts from the SFT policy (InstructGPT's recipe): same tokenizer,
        # and a backbone that already reads the conversations.
        return self._train("rm", str(self.out / "sft"))

    def _step_rlhf(self) -> dict[str, Any]:
        return self._train("rlhf", str(self.out / "sft"), reward_model=str(self.out / "rm"))

    def _app(self) -> Any:
        from api.bootstrap import load_config, open_app

        return open_app(self.plan.store, load_config(self.plan.store))

    def _step_register(self) -> dict[str, Any]:
        from training.registry import register

        bases = {
            "sft": self.plan.base_model,
            "rm": self.plan.model_name("sft"),
            "rlhf": self.plan.model_name("sft"),
        }
        app = self._app()
        registered = {}
        try:
            for kind in TRAINING_STEPS:
                name = self.plan.model_name(kind)
                outcome = register(
                    app,
                    name=name,
                    path=self.out / kind,
                    kind=kind,
                    base_model=bases[kind],
                    dataset=self.out / "datasets",
                    metrics=self.out / kind / "metrics.json",
                )
                registered[name] = {"kind": kind, "new": bool(outcome.recorded)}
        finally:
            app.close()
        return {"models": registered}

    def _step_prelabel(self) -> dict[str, Any]:
        from api.bootstrap import caught_up_runner, load_config
        from training.prelabel import PrelabelOptions, find_targets, prelabel

        if self.plan.prelabel_n <= 0:
            raise FlywheelError("the prelabel step needs --prelabel N (candidates per prompt)")
        runner = caught_up_runner(str(self.plan.store))
        try:
            targets = find_targets(
                runner.readmodel.reader(),
                load_config(self.plan.store),
                self.plan.lang,
                self.plan.prelabel_limit,
            )
        finally:
            runner.close()
        app = self._app()
        try:
            summary = prelabel(
                app,
                targets,
                self.plan.model_name("rlhf"),
                PrelabelOptions(
                    n=self.plan.prelabel_n, max_new_tokens=self.plan.prelabel_max_new_tokens
                ),
            )
        finally:
            app.close()
        return {
            k: v
            for k, v in summary.as_dict().items()
            if k in ("model_name", "prompts_seen", "added", "refused", "tokens_per_second")
        }

    def _step_report(self) -> dict[str, Any]:
        from api.flywheel_report import turn_report
        from training.registry import resolve

        app = self._app()
        try:
            previous = resolve(app, self.plan.base_model)
        finally:
            app.close()
        return turn_report(
            self.plan.store,
            self.out,
            self.plan.model_name("rlhf"),
            (previous.model_name, previous.path),
            self.plan.training_options("rlhf"),
            self.plan.prelabel_max_new_tokens,
            self.state["steps"].get("datasets", {}).get("summary", {}).get("from_votes"),
        )

    # ------------------------------------------------------------------ results
    def summary(self) -> dict[str, Any]:
        steps = self.state["steps"]
        return {
            "out": str(self.out),
            **self.plan.identity(),
            "steps": {s: steps[s]["summary"] for s in STEPS if s in steps},
        }
